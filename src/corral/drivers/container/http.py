"""HTTP/1.1 over a Unix socket on asyncio streams: just what talking to a container engine's
REST API needs (Docker's, or Podman's Docker-compatible one).

Stdlib only and import-light, because the daemon imports it and stays lean (benchmark S2):
``http.client`` would bring the ``email`` parser, ``urllib.request`` brings ``ssl``. The
engines answer with ``Content-Length`` bodies, chunked bodies (streams: logs, a long
``wait``) or bodies that end with the connection; all three are read here.

One connection per request (``Connection: close``): a Unix socket connects in microseconds,
and nothing idle is ever left bound to an event loop that may close (each test has its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

_LIMIT = 1 << 20  # longest header line; engine replies' heads are a few hundred bytes


class HttpError(OSError):
    """The socket is not there, refused, or the reply is not HTTP."""


class Response:
    """A reply's status and headers; the body is read with ``read`` or ``chunks``."""

    def __init__(self, status: int, headers: dict[str, str], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, bodyless: bool) -> None:
        self.status = status
        self.headers = headers
        self._reader = reader
        self._writer = writer
        self._bodyless = bodyless

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked transfer decoded), until its end."""
        r = self._reader
        if self._bodyless:
            return
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while True:
                line = await r.readline()
                if not line:
                    raise HttpError("the engine closed the connection within a chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while (await r.readline()) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                try:
                    data = await r.readexactly(size)
                    await r.readexactly(2)  # CRLF after the chunk
                except asyncio.IncompleteReadError:
                    raise HttpError("the engine closed the connection within a chunked body"
                                    ) from None
                yield data
        elif "content-length" in self.headers:
            left = int(self.headers["content-length"])
            while left > 0:
                data = await r.read(min(left, 1 << 16))
                if not data:
                    raise HttpError("the engine closed the connection within a body")
                left -= len(data)
                yield data
        else:
            while data := await r.read(1 << 16):
                yield data

    async def read(self) -> bytes:
        return b"".join([c async for c in self.chunks()])

    async def json(self) -> Any:
        raw = await self.read()
        return json.loads(raw) if raw.strip() else None

    def close(self) -> None:
        self._writer.close()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await self._writer.wait_closed()


async def open_request(socket_path: str, method: str, target: str, body: Any = None, *,
                       headers: dict[str, str] | None = None) -> Response:
    """Send one request; return once the reply's head is in (the body is the caller's to
    read, then ``aclose``). ``body`` is sent as JSON; ``headers`` are added as given."""
    try:
        reader, writer = await asyncio.open_unix_connection(socket_path, limit=_LIMIT)
    except OSError as exc:
        raise HttpError(f"cannot connect to {socket_path}: {exc.strerror or exc}") from None
    try:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        head = [f"{method} {target} HTTP/1.1", "Host: engine", "Connection: close",
                f"Content-Length: {len(payload)}"]
        if body is not None:
            head.append("Content-Type: application/json")
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
        status, headers = await _read_head(reader)
        while 100 <= status < 200:  # an interim reply; the real one follows
            status, headers = await _read_head(reader)
    except HttpError:
        writer.close()
        raise
    except OSError as exc:  # reset by the engine before its reply
        writer.close()
        raise HttpError(f"the engine broke the connection: {exc}") from None
    except BaseException:
        writer.close()
        raise
    bodyless = method == "HEAD" or status in (204, 304)
    return Response(status, headers, reader, writer, bodyless=bodyless)


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        line = await reader.readline()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise HttpError(f"not an HTTP reply: {line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n"):
                return status, headers
            if not line:
                raise HttpError("the engine closed the connection within a reply's head")
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
    except (ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError) as exc:
        raise HttpError(f"unreadable reply: {exc}") from None


async def request(socket_path: str, method: str, target: str, body: Any = None,
                  ) -> tuple[int, Any]:
    """One request, its whole reply: ``(status, JSON body or None)``."""
    reply = await open_request(socket_path, method, target, body)
    try:
        raw = await reply.read()
    except HttpError:
        raise
    except OSError as exc:  # reset by the engine mid-reply
        raise HttpError(f"the engine broke the connection: {exc}") from None
    finally:
        await reply.aclose()
    if not raw.strip():
        return reply.status, None
    try:
        return reply.status, json.loads(raw)
    except ValueError:  # an error in plain text (rare; some proxies)
        return reply.status, {"message": raw.decode("utf-8", "replace").strip()}
