"""The daemon's life: one supervisor, the API on a Unix socket, signals, an orderly exit.

``corral.daemon.entry`` is the entry point; it imports this module only once asyncio is in (see
there why that order matters).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import Any

from corral import paths
from corral.api.http import Reply, Request, Stream
from corral.api.listener import Budget, Listener, Settings, tcp_socket, unix_socket
from corral.api.server import Api
from corral.drivers.host import proctree
from corral.errors import CorralError
from corral.manifest.spec import Manifest
from corral.runtime.events import EventBus
from corral.runtime.store import Store
from corral.runtime.supervisor import Supervisor

# Seconds without a request after which the work of a burst (a reconcile spawning hundreds of
# instances, the status polls around it) is taken to be over.
_QUIET_AFTER_BURST = 2.0


def give_back_heap() -> None:
    """Return the heap pages freed after a burst to the system. glibc keeps them for reuse,
    and an idle daemon would hold them for the life of the fleet: ~0.4 MB after starting 500
    instances (benchmark S2). ctypes is already loaded (``proctree.become_subreaper``); on a
    libc without ``malloc_trim`` (musl) there is nothing to do."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 8 << 20
_TRIM_THRESHOLD = 32 << 20


def keep_heap() -> bool:
    """Serve the log path's megabyte-sized buffers (pipe reads, encoded chunks) from a heap
    that keeps freed memory. With glibc's defaults each chunk got fresh pages from mmap: the
    page faults and page zeroing cost the daemon as much CPU as framing the records (perf,
    S4). The heap keeps up to 32 MiB free during a burst; ``give_back_heap`` returns it once
    the daemon is quiet."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
            and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        )
    except (OSError, AttributeError):
        return False  # not glibc: its defaults stay


async def serve(state_dir: str, settings: Settings) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    stop_fleet = {"value": True}
    store = Store(paths.store_file(state_dir))
    sup = Supervisor(state_dir, store=store, events=EventBus())

    def shutdown(fleet_too: bool) -> None:
        stop_fleet["value"] = fleet_too
        stopping.set()

    api = Api(sup, shutdown=shutdown)
    trim: asyncio.TimerHandle | None = None

    def give_back_heap_later() -> None:
        nonlocal trim
        if trim is not None:
            trim.cancel()
        trim = loop.call_later(_QUIET_AFTER_BURST, give_back_heap)

    async def handle(req: Request) -> Reply | Stream:
        try:
            return await api(req)
        finally:
            # any request may end a burst: a reconcile and the status polls that follow it
            # (a `ps` of 500 instances is a 100 KB reply), a log query
            give_back_heap_later()
    sock = paths.socket_path(state_dir)
    # one descriptor budget for both listeners: what they hold is what the fleet cannot get
    budget = Budget.of_process(lambda: len(sup.runners))
    listeners: list[Listener] = []
    listeners.append(Listener(unix_socket(sock), handle, name=sock, cap=settings.api_cap,
                              limits=settings.limits, budget=budget, peers=listeners))

    board: list[Any] = []  # the dashboard, once served (``api.dashboard``, imported then)

    async def open_dashboard(port: int | None) -> dict[str, Any]:
        """The dashboard's listener on ``port`` (else the manifest's, else a free one) unless
        it is served already, and a one-time link to it."""
        if board and port is not None and port != board[0].port:
            raise CorralError(f"the dashboard is served on port {board[0].port} already",
                              "open it there ('corral dashboard' without --port), or "
                              "restart the daemon to serve it on another")
        if not board:
            from corral.api.dashboard import Dashboard

            m = sup.manifest
            want = port if port is not None else m.dashboard.port if m is not None else None
            board.append(Dashboard(api, state_dir, want or 0, settings=settings,
                                   budget=budget, peers=listeners))
        link: dict[str, Any] = board[0].link()
        return link

    api.open_dashboard = open_dashboard
    metrics_served: list[bool] = []

    async def before_apply(m: Manifest | None) -> None:
        await start_metrics(m)
        if m is not None and m.dashboard.port is not None and not board:
            await open_dashboard(m.dashboard.port)

    async def start_metrics(m: Manifest | None) -> None:
        """The manifest's metrics listener, once; a port that cannot be bound raises (the
        apply that asked for it fails with that line)."""
        if m is None or m.metrics.port is None or metrics_served:
            return
        async def only_metrics(req: Request) -> Reply:
            if req.path == "/metrics":
                reply = await api.render_metrics(req)
                assert isinstance(reply, Reply)
                return reply
            return Reply(404, b"only /metrics is served here\n", "text/plain")

        try:
            listening = tcp_socket(m.metrics.host, m.metrics.port)
        except OSError as exc:
            raise CorralError(f"metrics port {m.metrics.host}:{m.metrics.port} is unavailable "
                              f"({exc.strerror or exc})",
                              "free the port or change metrics.port") from None
        listeners.append(Listener(listening, only_metrics,
                                  name=f"metrics {m.metrics.host}:{m.metrics.port}",
                                  cap=settings.metrics_cap, limits=settings.metrics_limits,
                                  budget=budget, peers=listeners))
        metrics_served.append(True)

    api.before_apply = before_apply
    loop.add_signal_handler(signal.SIGTERM, shutdown, True)
    loop.add_signal_handler(signal.SIGINT, shutdown, True)
    reaping = {"due": False}

    def reap() -> None:
        reaping["due"] = False
        proctree.reap_orphans(sup.known_pids())

    def on_sigchld() -> None:
        # a burst of exits (down of 500 instances) coalesces into one sweep for orphans;
        # our own children are reaped by their pidfd watchers, not here
        if not reaping["due"]:
            reaping["due"] = True
            loop.call_later(0.05, reap)

    loop.add_signal_handler(signal.SIGCHLD, on_sigchld)
    adopted = await sup.recover()
    give_back_heap_later()
    try:
        await before_apply(sup.manifest)
    except CorralError as exc:  # the re-adopted fleet runs on; the next up reports it too
        print(f"corral: {exc}", file=sys.stderr)
    with open(paths.pid_file(state_dir), "w") as f:
        f.write(f"{os.getpid()}\n")
    print(f"corral daemon {os.getpid()} serving {sock} (re-adopted {adopted})", flush=True)
    # The CLI validates the manifest before its first request; meanwhile load the default
    # driver (entry-point scan + import, ~75 ms), which would otherwise sit between `up` and
    # the first spawn.
    loop.call_soon(sup.driver, "process")
    await stopping.wait()
    if stop_fleet["value"]:
        await sup.down()
    for listener in listeners:
        listener.close()
    await sup.close()
    store.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(paths.pid_file(state_dir))
    print(f"corral daemon {os.getpid()} stopped at {time.ctime()}", flush=True)
    return 0
