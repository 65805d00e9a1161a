"""The API client: HTTP/1.0 over the daemon's Unix socket with nothing but the stdlib socket
module, because ``corral ps`` must answer in well under 100 ms (http.client alone costs 40 ms
of imports)."""

from __future__ import annotations

import json
import socket

from corral.errors import CorralError, DaemonNotRunning

TYPE_CHECKING = False  # not typing's: ``corral ps`` imports this module on every poll
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


class ApiError(CorralError):
    pass


class Client:
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
        sock.sendall(head.encode() + payload)
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
            raise DaemonNotRunning("the corral daemon closed the connection (did it die?)",
                                   "see the daemon log in the state dir, then 'corral up -d'"
                                   ) from None
        finally:
            sock.close()
        raw = b"".join(chunks)
        head, _, payload = raw.partition(b"\r\n\r\n")
        if not head:
            raise DaemonNotRunning("the corral daemon closed the connection (did it die?)",
                                   "see the daemon log in the state dir, then 'corral up -d'")
        status = int(head.split(b" ", 2)[1])
        value = json.loads(payload) if payload and b"json" in head.lower() else payload
        if status >= 400:
            if isinstance(value, dict) and "error" in value:
                err = ApiError(str(value["error"]), str(value.get("fix", "")))
                err.exit_code = 4 if status == 404 else 2 if status == 422 else 1
                raise err
            raise ApiError(f"the daemon answered {status}", "see the daemon log")
        return value

    def lines(self, method: str, path: str, body: Any = None) -> Iterator[bytes]:
        """A streamed response, line by line (log records, server-sent events)."""
        sock = self._send(method, path, body, None)
        try:
            buf = b""
            head_done = False
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    break
                buf += data
                if not head_done:
                    head, sep, rest = buf.partition(b"\r\n\r\n")
                    if not sep:
                        continue
                    status = int(head.split(b" ", 2)[1])
                    if status >= 400:
                        value = json.loads(rest) if rest.strip() else {}
                        raise ApiError(str(value.get("error", status)), str(value.get("fix", "")))
                    head_done, buf = True, rest
                *complete, buf = buf.split(b"\n")
                yield from complete
            if buf:
                yield buf
        finally:
            sock.close()
