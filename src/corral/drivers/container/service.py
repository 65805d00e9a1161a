"""Where an engine's REST API answers; for Podman, its service, started by corral when none
is running.

Docker always has its daemon's socket (``DOCKER_HOST`` when it names a ``unix://`` one, else
``/var/run/docker.sock``). Podman is daemonless: its API is ``podman system service``. A
socket that already answers is used as is (``CONTAINER_HOST``, the system's
``/run/podman/podman.sock`` or the user's ``$XDG_RUNTIME_DIR/podman/podman.sock``, as systemd's
``podman.socket`` provides); otherwise this process starts one on a private socket the first
time it is needed, and every later start reuses it.

That service belongs to the process that started it (the daemon, one per state dir): ``close``
stops it when the daemon exits, and the kernel sends it SIGTERM if the daemon dies first
(``PR_SET_PDEATHSIG``), so it never outlives the fleet's supervisor, not even after a SIGKILL.
Containers do not depend on it (each has its own conmon): a restarted daemon starts a fresh
service and re-adopts them by their labels. When no API can be had, the driver uses the CLI.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from corral.drivers.container import http
from corral.drivers.container.engine import Engine

_START_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


def _unix(url: str | None) -> str | None:
    if url and url.startswith("unix://"):
        return url[len("unix://"):]
    return None


def candidates(engine: Engine) -> list[str]:
    """Sockets that may already serve ``engine``'s API, first choice first. Empty when the
    engine is set up to be reached otherwise (a remote host, a Docker context): then only
    the CLI knows how."""
    if engine.name == "docker":
        host = os.environ.get("DOCKER_HOST")
        if host:
            sock = _unix(host)
            return [sock] if sock else []
        if os.environ.get("DOCKER_CONTEXT"):
            return []
        return ["/var/run/docker.sock"]
    host = os.environ.get("CONTAINER_HOST")
    if host:
        sock = _unix(host)
        return [sock] if sock else []
    if os.environ.get("CONTAINER_CONNECTION"):
        return []
    if os.geteuid() == 0:
        return ["/run/podman/podman.sock"]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return [os.path.join(runtime, "podman", "podman.sock")] if runtime else []


async def _answers(sock: str) -> bool:
    if not os.path.exists(sock):
        return False
    try:
        status, _ = await asyncio.wait_for(http.request(sock, "GET", "/_ping"), 5)
    except (http.HttpError, TimeoutError):
        return False
    return status == 200


class PodmanService:
    """``podman system service --time=0`` on a private socket, owned by this process."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir: str | None = None
        self.socket: str | None = None
        self.log: str | None = None
        self._lock = asyncio.Lock()
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def ensure(self) -> str | None:
        """The service's socket, the service started first when it is not running."""
        loop = asyncio.get_running_loop()
        if self._lock_loop is not loop:  # a lock is bound to the loop that first awaits it
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            if self.alive() and self.socket is not None:
                return self.socket
            self.close()
            return await self._start()

    async def _start(self) -> str | None:
        base = os.path.join(tempfile.gettempdir(), f"corral-{os.getuid()}")
        os.makedirs(base, mode=0o700, exist_ok=True)
        _sweep(base)
        self.dir = tempfile.mkdtemp(prefix=f"podman-{os.getpid()}-", dir=base)
        sock = os.path.join(self.dir, "podman.sock")
        self.log = os.path.join(self.dir, "service.log")
        with open(self.log, "ab") as log:
            # cwd: where its conmons drop their "oom" files; the dir goes with the service
            self.proc = subprocess.Popen(
                [self.binary, "system", "service", "--time=0", f"unix://{sock}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.dir,
                close_fds=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + _START_TIMEOUT
        delay = 0.005
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if await _answers(sock):
                self.socket = sock  # only now: a caller given it can connect at once
                return sock
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        print(f"corral: podman system service did not answer: {_tail(self.log)}; using the "
              "podman CLI", file=sys.stderr)
        self.close()
        return None

    def close(self) -> None:
        """Stop the service (SIGTERM, then SIGKILL after 5 s) and remove its dir."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = self.socket = None


def _sweep(base: str) -> None:
    """Remove the dirs of services whose owner is gone (it was killed: the kernel stopped
    its service, nobody removed the socket and log). A dir is named after its owner's pid."""
    for name in os.listdir(base):
        parts = name.split("-")
        if len(parts) < 3 or parts[0] != "podman" or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it dies."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _tail(path: str | None) -> str:
    try:
        with open(path or "", encoding="utf-8", errors="replace") as f:
            lines = [ln.strip() for ln in f.read().splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(no output)"


_services: dict[str, PodmanService] = {}


async def socket_for(engine: Engine, *, start: bool = True) -> str | None:
    """A socket serving ``engine``'s API, or None (then the CLI it is). ``start``: Podman's
    service may be started for it."""
    own = _services.get(engine.binary)
    if own is not None and own.alive() and own.socket is not None:
        return own.socket
    for sock in candidates(engine):
        if await _answers(sock):
            return sock
    if not start or engine.name != "podman" or os.environ.get("CONTAINER_HOST") \
            or os.environ.get("CONTAINER_CONNECTION"):
        return None
    service = _services.get(engine.binary)
    if service is None:
        service = _services[engine.binary] = PodmanService(engine.binary)
    return await service.ensure()


def alive(sock: str) -> bool:
    """Whether ``sock`` still serves: an own service's process is checked, any other socket
    taken as serving while it exists."""
    for service in _services.values():
        if service.socket == sock:
            return service.alive()
    return os.path.exists(sock)


def own_services() -> list[PodmanService]:
    return [s for s in _services.values() if s.alive()]


def close_all() -> None:
    """Stop every service this process started (the daemon's exit; ``atexit`` too)."""
    for service in _services.values():
        service.close()


atexit.register(close_all)
