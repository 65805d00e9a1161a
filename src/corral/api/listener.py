"""The daemon's listeners (the API's Unix socket, the metrics TCP port) under abuse.

asyncio's own ``start_server`` accepts without bound, and on EMFILE logs a traceback and
retries every second: 20,000 held connections took the daemon's last descriptor, supervision
wedged (a restarting agent could not open its pipes) and the log grew by megabytes a second.
This accept loop keeps three promises instead:

- **a cap per listener** (the metrics port, reachable by any local user, far lower than the
  owner-only socket). A connection over the cap takes the place of the oldest one that has
  no request under way (idle keep-alive, half-sent headers): a flood of half-open
  connections cannot keep ``corral ps`` or ``corral down`` out, since a CLI connection sends
  its request at once and is then never the one dropped. With nothing to drop, the new
  connection gets a 503 and is closed.
- **descriptors reserved for supervision**: the listeners together hold at most
  ``soft limit - reserve`` less what the daemon had open when they started; connections
  dropped but not yet closed count until they are. The reserve grows with the fleet (pipes,
  pidfds and cgroup files per instance, see ``Budget``). An accepted descriptor numbered at or
  above ``soft limit - reserve`` counts as over it too (the kernel gives the lowest free
  number: all below are taken, by anyone).
- **accept errors backed off** (EMFILE, ENFILE, ENOBUFS, ENOMEM): accepting pauses, growing
  from 50 ms to 2 s, and one line per interval says so with the count of errors it stands for.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from corral.api.http import Handler, Limits, Tracker, serve_connection

_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_BUSY_BODY = (b'{"error":"the corral daemon has too many connections open",'
              b'"fix":"retry in a moment; the daemon log says which listener is full"}')
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
         b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_BUSY_BODY) + _BUSY_BODY)
_ACCEPTS_PER_WAKEUP = 64  # then let the loop run the fleet's callbacks


class Throttled:
    """One line per ``interval`` for a repeating event; the lines between are counted and
    the count goes into the next line that is written."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic,
                 write: Callable[[str], None] | None = None) -> None:
        self.interval = interval
        self._clock = clock
        self._write = write or _to_stderr
        self._last: float | None = None
        self.suppressed = 0

    def __call__(self, line: str) -> bool:
        """Write ``line`` unless one was written less than ``interval`` ago; True if written."""
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            self.suppressed += 1
            return False
        if self.suppressed:
            line += f" ({self.suppressed} more since the last report)"
        self._last, self.suppressed = now, 0
        self._write(line)
        return True


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Backoff:
    """Delays after consecutive failures: ``initial`` doubling to ``cap``; reset on success."""

    def __init__(self, initial: float = 0.05, cap: float = 2.0) -> None:
        self.initial, self.cap = initial, cap
        self.failures = 0

    def next(self) -> float:
        delay = min(self.cap, self.initial * 2.0 ** min(self.failures, 60))
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


# Descriptors an instance can hold at once in the daemon: two pipe ends being read, a pidfd,
# cgroup files, and while it spawns the two child ends and Popen's error pipe.
PER_INSTANCE_FDS = 8
BASE_RESERVE = 64  # the store, the logs, the loop's own, a container engine's connections


@dataclass
class Budget:
    """The descriptors the listeners may use, shared by all of them."""

    soft_limit: int
    instances: Callable[[], int] = lambda: 0
    baseline: int = 0  # descriptors the daemon held before any connection
    held: int = 0  # connections' descriptors not closed yet, on every listener

    @classmethod
    def of_process(cls, instances: Callable[[], int]) -> Budget:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            baseline = len(os.listdir("/proc/self/fd"))
        except OSError:
            baseline = 0
        return cls(soft if soft != resource.RLIM_INFINITY else 1 << 20, instances, baseline)

    def reserve(self) -> int:
        return BASE_RESERVE + PER_INSTANCE_FDS * self.instances()

    def leaves_room(self, fd: int) -> bool:
        """Whether a connection on ``fd`` (just accepted, not yet in ``held``) keeps the
        fleet's reserve free."""
        top = self.soft_limit - self.reserve()
        # the lowest free number at the top: every descriptor below it is taken
        return fd < top and self.held < top - self.baseline


class _Conn(Tracker):
    __slots__ = ("sock", "started", "task", "writer")

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.started = False
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    def drop(self) -> None:
        self.dropped = True
        if self.writer is not None:
            self.writer.transport.abort()
        elif not self.started:  # accepted in this same burst: its task sees ``dropped``
            self.sock.close()
        # else its transport is being made: closing the descriptor under it now would let
        # the number be reused and registered for the wrong socket; ``_serve`` aborts it


def _refuse(sock: socket.socket) -> None:
    """Answer 503 and close. What the client sent is read first: a Unix socket closed with
    unread bytes resets the peer, which then loses the 503 and reports a dead daemon."""
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        sock.send(_BUSY)
        for _ in range(16):  # a request's worth; a bigger one may still see the reset
            if not sock.recv(65536):
                break
    sock.close()


class Listener:
    """Accepts on ``sock`` (listening, non-blocking) and serves each connection with
    ``handler`` within ``limits``; at most ``cap`` connections at once."""

    def __init__(self, sock: socket.socket, handler: Handler, *, name: str, cap: int,
                 limits: Limits, budget: Budget, peers: list[Listener] | None = None) -> None:
        self.sock = sock
        self.handler = handler
        self.name = name
        self.cap = cap
        self.limits = limits
        self.budget = budget
        self.conns: dict[_Conn, None] = {}  # in accept order: the first is the oldest
        self.peers = peers if peers is not None else [self]  # listeners sharing ``budget``
        self.refused = 0
        self.evicted = 0
        self._backoff = Backoff()
        self._report = Throttled(10.0)
        self._busy_report = Throttled(10.0)
        self._loop = asyncio.get_running_loop()
        self._paused: asyncio.TimerHandle | None = None
        self._closed = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    self._report(f"corral: accept on {self.name} failed: {exc}")
                    return
                self._pause(exc)
                return
            self._backoff.reset()
            if not self._admit(conn):
                # room was made (or refused): the dropped descriptor closes in the loop's
                # next pass, and only then is the next one accepted, so a burst cannot
                # overshoot the budget by what it has dropped but not yet closed
                return

    def _pause(self, exc: OSError) -> None:
        """Out of descriptors or memory: stop accepting a while (the kernel queues up to the
        backlog meanwhile), say so once per interval, and make room by dropping idle ones."""
        delay = self._backoff.next()
        self._report(f"corral: accept on {self.name} failed: {exc.strerror or exc}; "
                     f"accepting paused for {delay:g}s")
        self._drop_idle()
        self._loop.remove_reader(self.sock.fileno())

        def resume() -> None:
            self._paused = None
            if not self._closed:
                self._loop.add_reader(self.sock.fileno(), self._accept)

        self._paused = self._loop.call_later(delay, resume)

    def _admit(self, sock: socket.socket) -> bool:
        """Serve ``sock`` if there is room or room can be made; False unless there was."""
        over_cap = len(self.conns) >= self.cap
        over_budget = not self.budget.leaves_room(sock.fileno())
        # over the cap, one of this listener's must go; over the budget, anyone's will do
        if (over_cap or over_budget) and not self._drop_idle(self if over_cap else None):
            self.refused += 1
            self._busy_report(f"corral: {self.name}: {len(self.conns)} connections open "
                              f"(cap {self.cap}, descriptor limit {self.budget.soft_limit}"
                              f" less {self.budget.reserve()} kept for the fleet); "
                              "refusing new ones")
            _refuse(sock)
            return False
        conn = _Conn(sock)
        self.conns[conn] = None
        self.budget.held += 1  # until its task ends, which is after its descriptor closed
        conn.task = self._loop.create_task(self._serve(conn))
        return not (over_cap or over_budget)

    def _drop_idle(self, only: Listener | None = None) -> bool:
        """Drop the oldest connection with no request under way (of ``only``, else of any
        listener sharing the budget); False if there is none."""
        for listener in [only] if only is not None else self.peers:
            for conn in listener.conns:
                if not conn.busy and not conn.dropped:
                    listener.evicted += 1
                    conn.drop()
                    del listener.conns[conn]  # its descriptor is closed now or at abort
                    return True
        return False

    async def _serve(self, conn: _Conn) -> None:
        try:
            if conn.dropped:  # closed by ``drop`` before this ran
                return
            conn.started = True
            reader = asyncio.StreamReader(limit=self.limits.max_header_bytes, loop=self._loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=self._loop)
            transport, _ = await self._loop.connect_accepted_socket(lambda: protocol,
                                                                    sock=conn.sock)
            conn.writer = asyncio.StreamWriter(transport, protocol, reader, self._loop)
            if conn.dropped:
                transport.abort()
                return
            await serve_connection(reader, conn.writer, self.handler, limits=self.limits,
                                   tracker=conn)
        except OSError:
            pass  # the peer went away while its transport was made
        finally:
            if conn.writer is None:  # failed (or was cancelled) before it had a transport
                conn.sock.close()
            self.conns.pop(conn, None)
            self.budget.held -= 1

    def close(self) -> None:
        """Stop accepting and drop every connection (a held one must not keep the daemon)."""
        self._closed = True
        if self._paused is not None:
            self._paused.cancel()
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for conn in list(self.conns):
            conn.drop()
        self.conns.clear()


def unix_socket(path: str, backlog: int = 128) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 from the start (umask, not chmod after
    bind: no moment where another user could connect)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(backlog)
    return sock


def tcp_socket(host: str, port: int, backlog: int = 128) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


# The knobs, for tests and for a daemon that must take more (or less); read once at start.
ENV_LIMITS = {
    "CORRAL_HTTP_HEADER_TIMEOUT": "header_timeout",
    "CORRAL_HTTP_IDLE_TIMEOUT": "idle_timeout",
    "CORRAL_HTTP_BODY_TIMEOUT": "body_timeout",
    "CORRAL_HTTP_SEND_TIMEOUT": "send_timeout",
}
API_CAP, METRICS_CAP = 256, 32  # the metrics port is open to every local user: far lower


@dataclass(frozen=True)
class Settings:
    limits: Limits
    api_cap: int = API_CAP
    metrics_cap: int = METRICS_CAP

    @property
    def metrics_limits(self) -> Limits:
        """A scrape is a GET with a few headers: any local user may connect there, so what
        each of its connections may make the daemon hold stays small (32 x 16 MiB of
        bodies read before the 404 otherwise)."""
        return replace(self.limits, max_header_bytes=8 * 1024, max_body_bytes=4 * 1024)


class SettingError(ValueError):
    pass


def settings(environ: dict[str, str] | os._Environ[str]) -> Settings:
    """The listeners' settings from ``environ``; a bad value raises ``SettingError`` naming
    the variable (the daemon then exits with that line, which ``corral up`` shows)."""
    timeouts: dict[str, Any] = {}
    for var, field_name in ENV_LIMITS.items():
        if var in environ:
            timeouts[field_name] = _number(environ, var, float)
    caps = {"api_cap": API_CAP, "metrics_cap": METRICS_CAP}
    for var, key in (("CORRAL_API_MAX_CONNECTIONS", "api_cap"),
                     ("CORRAL_METRICS_MAX_CONNECTIONS", "metrics_cap")):
        if var in environ:
            caps[key] = int(_number(environ, var, int))
    return Settings(replace(Limits(), **timeouts), **caps)


def _number(environ: dict[str, str] | os._Environ[str], var: str,
            kind: type[int] | type[float]) -> float:
    raw = environ[var]
    try:
        value = kind(raw)
    except ValueError:
        value = -1
    if not value > 0 or value == float("inf"):
        what = "a whole number" if kind is int else "a number of seconds"
        raise SettingError(f"{var}={raw!r} is not {what} above 0; fix or unset it")
    return value
