"""A small HTTP/1.1 server on asyncio streams, with h11 doing the protocol work.

Why not a framework: the API is a dozen routes; h11 gives a correct parser in a few hundred KB
of memory, where an ASGI stack would add more to the daemon than its whole fleet bookkeeping.
Handlers return a ``Reply`` (one body) or a ``Stream`` (an async iterator of chunks, for
server-sent events and log streams).
"""

from __future__ import annotations

import asyncio
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
    # the head's fields, names lowercased (h11's), in the order sent
    headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        """The last value of the field ``name`` (lowercase), or None."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found

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
    headers: tuple[tuple[str, str], ...] = ()


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


@dataclass(frozen=True, slots=True)
class Limits:
    """What one connection may take of the daemon. A connection that sends nothing, or its
    headers a byte at a time, holds a descriptor: each phase has a deadline.

    ``header_timeout``: from the connection (or the end of the last reply) to a complete
    request head; ``idle_timeout``: a keep-alive connection's wait for its next request's
    first byte; ``body_timeout``: from the head to the end of the body; ``send_timeout``: a
    reply (or a stream's chunk) the peer does not read. Heads over ``max_header_bytes`` get
    431, bodies over ``max_body_bytes`` 413."""

    header_timeout: float = 10.0
    idle_timeout: float = 5.0
    body_timeout: float = 30.0
    send_timeout: float = 30.0
    max_header_bytes: int = 32 * 1024
    max_body_bytes: int = 16 * 1024 * 1024


class Tracker:
    """A connection as its listener sees it: ``busy`` while a request is under way (read in
    full, being answered); only a connection that is not busy may be dropped to make room."""

    __slots__ = ("busy", "dropped")

    def __init__(self) -> None:
        self.busy = False
        self.dropped = False


class _Refuse(Exception):
    """The request breaks a limit: answer ``status`` and close."""

    def __init__(self, status: int, reason: str, text: str) -> None:
        super().__init__(text)
        self.status, self.reason, self.text = status, reason, text


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           handler: Handler, *, limits: Limits = Limits(),
                           tracker: Tracker | None = None) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
    track = tracker if tracker is not None else Tracker()
    first = True
    try:
        while True:
            try:
                request = await _read_request(conn, reader, limits, first)
            except _Refuse as refusal:
                writer.write(_raw_reply(refusal))
                await asyncio.wait_for(writer.drain(), limits.send_timeout)
                break
            first = False
            if request is None:
                break
            track.busy = True
            try:
                reply = await handler(request)
            except Exception as exc:  # the daemon must survive any handler bug
                reply = error_reply(500, f"internal error: {type(exc).__name__}: {exc}",
                                    "see the daemon log in the state dir")
            if isinstance(reply, Reply):
                headers = [("content-type", reply.content_type),
                           ("content-length", str(len(reply.body))), *reply.headers]
                writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)))
                writer.write(conn.send(h11.Data(data=reply.body)))
                writer.write(conn.send(h11.EndOfMessage()))
                await asyncio.wait_for(writer.drain(), limits.send_timeout)
            else:
                await _stream(conn, writer, reply, limits.send_timeout)
            track.busy = False
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
    except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
        pass
    except TimeoutError:  # a reply not read: closing would wait for it to be flushed
        writer.transport.abort()
    finally:
        track.busy = False
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), limits.send_timeout)
        except TimeoutError:
            writer.transport.abort()
        except (ConnectionError, OSError):
            pass


def _raw_reply(refusal: _Refuse) -> bytes:
    """Written past h11: a head it refused to parse leaves it no response to send."""
    body = json.dumps({"error": refusal.text, "fix": "send a smaller or complete request"}
                      ).encode()
    return (f"HTTP/1.1 {refusal.status} {refusal.reason}\r\ncontent-type: application/json"
            f"\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader, limits: Limits,
                        first: bool) -> Request | None:
    """The next request, or None when the peer closed (or idled out) between requests."""
    now = asyncio.get_running_loop().time
    started = now()
    head_by = started + limits.header_timeout
    # a connection's first request must come within the header timeout, a keep-alive's next
    # within the idle timeout; either way, a peer that never sends is closed without a word
    deadline = head_by if first else started + min(limits.idle_timeout, limits.header_timeout)
    received = bool(conn.trailing_data[0])
    head: h11.Request | None = None
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            if status == 431:
                raise _Refuse(431, "Request Header Fields Too Large",
                              f"request head over {limits.max_header_bytes} bytes") from None
            raise _Refuse(status, "Bad Request", f"malformed request: {exc}") from None
        if event is h11.NEED_DATA:
            try:
                async with asyncio.timeout_at(deadline):
                    # a head is read in pieces of the limit: h11 measures only an incomplete
                    # one, so a whole oversized head in one read would pass
                    data = await reader.read(65536 if head is not None
                                             else limits.max_header_bytes)
            except TimeoutError:
                if not received:
                    return None
                phase, within = (("request head", limits.header_timeout) if head is None
                                 else ("request body", limits.body_timeout))
                raise _Refuse(408, "Request Timeout",
                              f"the {phase} did not arrive within {within:g}s") from None
            if data and not received:
                received, deadline = True, head_by
            conn.receive_data(data)
            if not data and head is None:
                return None
            continue
        if isinstance(event, h11.Request):
            head = event
            deadline = now() + limits.body_timeout
            for name, value in event.headers:
                if name == b"content-length" and int(value) > limits.max_body_bytes:
                    raise _Refuse(413, "Content Too Large", _too_large(limits))
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limits.max_body_bytes:
                raise _Refuse(413, "Content Too Large", _too_large(limits))
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            path, query = split_target(head.target.decode())
            fields = tuple((k.decode(), v.decode("latin-1")) for k, v in head.headers)
            return Request(head.method.decode(), path, query, bytes(body), fields)
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


def _too_large(limits: Limits) -> str:
    return f"request body over {limits.max_body_bytes} bytes"


async def _stream(conn: h11.Connection, writer: asyncio.StreamWriter, reply: Stream,
                  send_timeout: float) -> None:
    headers = [("content-type", reply.content_type), ("cache-control", "no-cache"),
               *reply.headers]
    writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)))
    await asyncio.wait_for(writer.drain(), send_timeout)
    try:
        async for chunk in reply.chunks:
            if chunk:
                writer.write(conn.send(h11.Data(data=chunk)))
                # no deadline here: a follower may pause (``logs -f | less``); drain holds
                # the stream's producer meanwhile, so what waits stays under the buffer's
                # high-water mark, and the listener's cap bounds such connections
                await writer.drain()
    finally:
        aclose = getattr(reply.chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    writer.write(conn.send(h11.EndOfMessage()))
    await asyncio.wait_for(writer.drain(), send_timeout)
