"""A small HTTP/1.1 server on asyncio streams, with h11 doing the protocol work.

Why not a framework: the API is a dozen routes; h11 gives a correct parser in a few hundred KB
of memory, where an ASGI stack would add more to the daemon than its whole fleet bookkeeping.
Handlers return a ``Reply`` (one body) or a ``Stream`` (an async iterator of chunks, for
server-sent events and log streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h11


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return {}
        return json.loads(self.body)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass(slots=True)
class Stream:
    chunks: AsyncIterator[bytes]
    content_type: str = "text/event-stream"
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Reply | Stream]]


def split_target(target: str) -> tuple[str, dict[str, list[str]]]:
    """``(path, query)`` as ``urlsplit(target).path`` and ``parse_qs(urlsplit(target).query,
    keep_blank_values=True)`` give them for a request target (a blank value is kept: the API
    checks ``tail=`` as the empty text it is, not as a missing parameter). Not urllib.parse
    itself: it imports ``ipaddress``, and the two stay resident in the daemon for the life of
    the fleet (~0.4 MB, benchmark S2)."""
    target = target.partition("#")[0]
    if not target.startswith("/") and "://" in target:  # absolute form: drop the authority
        rest = target.partition("://")[2]
        target = "/" + rest.partition("/")[2] if "/" in rest else rest[len(rest):]
    path, _, query = target.partition("?")
    out: dict[str, list[str]] = {}
    for pair in query.split("&"):
        if pair:  # parse_qs skips empty pairs (``a=1&&b=2``) and reads ``x`` as ``x=``
            name, _, value = pair.partition("=")
            out.setdefault(_unquote(name), []).append(_unquote(value))
    return path, out


def _unquote(text: str) -> str:
    """``urllib.parse.unquote_plus``: '+' is a space, %XX a byte, bytes are UTF-8."""
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    first, *pieces = text.encode().split(b"%")
    out = bytearray(first)
    for piece in pieces:
        code = piece[:2]
        if len(code) == 2 and all(c in _HEX for c in code):
            out.append(int(code, 16))
            out += piece[2:]
        else:
            out += b"%" + piece
    return out.decode(errors="replace")


_HEX = frozenset(b"0123456789abcdefABCDEF")


def json_reply(value: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(value, separators=(",", ":")).encode())


def error_reply(status: int, problem: str, fix: str = "") -> Reply:
    return json_reply({"error": problem, "fix": fix}, status)


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           handler: Handler) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request = await _read_request(conn, reader)
            if request is None:
                break
            try:
                reply = await handler(request)
            except Exception as exc:  # the daemon must survive any handler bug
                reply = error_reply(500, f"internal error: {type(exc).__name__}: {exc}",
                                    "see the daemon log in the state dir")
            if isinstance(reply, Reply):
                headers = [("content-type", reply.content_type),
                           ("content-length", str(len(reply.body)))]
                writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)))
                writer.write(conn.send(h11.Data(data=reply.body)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
            else:
                await _stream(conn, writer, reply)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
    except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> Request | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            conn.receive_data(data)
            if not data and head is None:
                return None
            continue
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            path, query = split_target(head.target.decode())
            return Request(head.method.decode(), path, query, bytes(body))
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


async def _stream(conn: h11.Connection, writer: asyncio.StreamWriter, reply: Stream) -> None:
    headers = [("content-type", reply.content_type), ("cache-control", "no-cache"),
               *reply.headers]
    writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)))
    await writer.drain()
    try:
        async for chunk in reply.chunks:
            if chunk:
                writer.write(conn.send(h11.Data(data=chunk)))
                await writer.drain()
    finally:
        aclose = getattr(reply.chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()
