"""The engine API's HTTP client against a scripted server on a Unix socket: the three ways a
body ends (length, chunks, close), replies split at any byte, and the errors it names."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from corral.drivers.container import http

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(path: Path, reply: bytes, seen: list[bytes], *, drip: bool = False) -> Any:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await r.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length")), 0)
        seen.append(head + await r.readexactly(length))
        for i in range(0, len(reply), 1 if drip else len(reply) or 1):
            w.write(reply[i:i + (1 if drip else len(reply))])
            await w.drain()
        w.close()

    return await asyncio.start_unix_server(handle, path=str(path))


def _run(path: Path, reply: bytes, method: str = "GET", body: Any = None,
         *, drip: bool = False) -> tuple[int, Any, list[bytes]]:
    async def go() -> tuple[int, Any, list[bytes]]:
        seen: list[bytes] = []
        server = await _serve(path, reply, seen, drip=drip)
        try:
            status, data = await http.request(str(path), method, "/v1.41/x?a=1", body)
        finally:
            server.close()
            await server.wait_closed()
        return status, data, seen

    return asyncio.run(go())


@pytest.mark.parametrize("drip", [False, True])
def test_a_content_length_reply_and_the_request_it_answers(tmp_path: Path, drip: bool) -> None:
    reply = b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 12' \
            b'\r\n\r\n{"Id": "ab"}'
    status, data, seen = _run(tmp_path / "s", reply, "POST", {"Image": "x"}, drip=drip)
    assert (status, data) == (201, {"Id": "ab"})
    head, _, payload = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1.41/x?a=1 HTTP/1.1\r\n")
    assert b"Connection: close" in head and b"Content-Type: application/json" in head
    assert payload == b'{"Image":"x"}'


@pytest.mark.parametrize("drip", [False, True])
def test_a_chunked_reply_with_trailers_is_joined(tmp_path: Path, drip: bool) -> None:
    reply = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5;ext=1\r\n{\"Sta\r\n0b\r\ntusCode\": 0\r\n1\r\n}\r\n0\r\nX-Trailer: y\r\n\r\n")
    status, data, _ = _run(tmp_path / "s", reply, drip=drip)
    assert (status, data) == (200, {"StatusCode": 0})


def test_a_reply_ended_by_closing_and_an_interim_continue(tmp_path: Path) -> None:
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\n[1, 2]"
    assert _run(tmp_path / "s", reply)[:2] == (200, [1, 2])


def test_no_body_for_204_and_a_plain_text_error_is_kept(tmp_path: Path) -> None:
    assert _run(tmp_path / "s", b"HTTP/1.1 204 No Content\r\n\r\n")[:2] == (204, None)
    reply = b"HTTP/1.1 500 Oops\r\nContent-Length: 9\r\n\r\nbad thing"
    assert _run(tmp_path / "t", reply)[:2] == (500, {"message": "bad thing"})


def test_a_missing_socket_and_a_reply_that_is_not_http_are_one_clear_error(
        tmp_path: Path) -> None:
    with pytest.raises(http.HttpError, match=r"cannot connect to .*/none"):
        asyncio.run(http.request(str(tmp_path / "none"), "GET", "/_ping"))
    with pytest.raises(http.HttpError, match="not an HTTP reply"):
        _run(tmp_path / "s", b"SSH-2.0-nope\r\n")
    with pytest.raises(http.HttpError, match="within a chunked body"):
        _run(tmp_path / "t", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")


def test_a_stream_is_read_as_it_arrives(tmp_path: Path) -> None:
    """``open_request`` returns at the head: the body's chunks come as the server sends
    them (a log follow), not at its end."""
    path = tmp_path / "s"

    async def go() -> list[bytes]:
        release = asyncio.Event()

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await r.readuntil(b"\r\n\r\n")
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
            await w.drain()
            await release.wait()
            w.write(b"3\r\ntwo\r\n0\r\n\r\n")
            w.close()

        server = await asyncio.start_unix_server(handle, path=str(path))
        got: list[bytes] = []
        try:
            reply = await http.open_request(str(path), "GET", "/logs")
            async for chunk in reply.chunks():
                got.append(chunk)
                release.set()
            await reply.aclose()
        finally:
            server.close()
            await server.wait_closed()
        return got

    assert asyncio.run(go()) == [b"one", b"two"]
