"""The daemon's end of the fleet protocol: HTTP/1.0 over the project's Unix socket with
nothing but the stdlib socket module, because ``corral ps`` must answer in well under 100 ms
(http.client alone costs 40 ms of imports)."""

from __future__ import annotations

import json
import socket

from corral.api.calls import CLOSED, ApiError, FleetCalls, decode, stream_error
from corral.errors import DaemonNotRunning

TYPE_CHECKING = False  # not typing's: ``corral ps`` imports this module on every poll
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = ["ApiError", "Client"]


def _content_type(head: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-type":
            return value.strip().decode("latin-1").lower()
    return ""


class Client(FleetCalls):
    def __init__(self, socket_path: str, *, timeout: float | None = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise DaemonNotRunning(
                "the corral daemon is not running for this project",
                "start it with 'corral up -d'",
            ) from None
        return sock

    def alive(self) -> bool:
        try:
            self._connect(1.0).close()
        except DaemonNotRunning:
            return False
        return True

    def _send(self, method: str, path: str, body: Any, timeout: float | None) -> socket.socket:
        payload = b"" if body is None else json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.0\r\nHost: corral\r\n"
                f"Content-Length: {len(payload)}\r\nContent-Type: application/json\r\n\r\n")
        sock = self._connect(timeout)
        try:  # noqa: SIM105  (not contextlib: ``corral ps`` imports this module each poll)
            sock.sendall(head.encode() + payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered and closed before reading (a 503 when it is full)
        return sock

    def request(self, method: str, path: str, body: Any = None,
                timeout: float | None = None) -> Any:
        sock = self._send(method, path, body, timeout if timeout is not None else self.timeout)
        chunks = []
        try:
            while True:
                data = sock.recv(1 << 20)
                if not data:
                    break
                chunks.append(data)
        except TimeoutError:
            raise ApiError(f"the daemon did not answer {method} {path} in time",
                           "see the daemon log in the state dir") from None
        except ConnectionResetError:
            raise DaemonNotRunning(*CLOSED) from None
        finally:
            sock.close()
        raw = b"".join(chunks)
        head, _, payload = raw.partition(b"\r\n\r\n")
        if not head:
            raise DaemonNotRunning(*CLOSED)
        return decode(int(head.split(b" ", 2)[1]), _content_type(head), payload)

    def lines(self, method: str, path: str, body: Any = None) -> Iterator[bytes]:
        """A streamed response, line by line (log records, server-sent events). The reply's
        head is read before this returns, so the daemon has subscribed by then: nothing that
        happens after the call is missed."""
        sock = self._send(method, path, body, None)
        try:
            buf = b""
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    raise DaemonNotRunning(*CLOSED)
                buf += data
                head, sep, rest = buf.partition(b"\r\n\r\n")
                if sep:
                    break
            status = int(head.split(b" ", 2)[1])
            if status >= 400:  # a refusal: its JSON body may come in more than one read
                while data := sock.recv(1 << 16):
                    rest += data
                raise stream_error(status, rest)
        except BaseException:
            sock.close()
            raise
        return self._rest(sock, rest)

    @staticmethod
    def _rest(sock: socket.socket, buf: bytes) -> Iterator[bytes]:
        try:
            while True:
                *complete, buf = buf.split(b"\n")
                yield from complete
                data = sock.recv(1 << 16)
                if not data:
                    break
                buf += data
            if buf:
                yield buf
        finally:
            sock.close()
