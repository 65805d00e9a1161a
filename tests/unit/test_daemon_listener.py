"""The daemon's listeners: caps, dropping idle connections, timeouts, size limits, backoff and
throttled reports, over real Unix sockets in this process."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

import pytest

from corral.api.http import Limits, Reply, Request
from corral.api.listener import (
    Backoff,
    Budget,
    Listener,
    SettingError,
    Throttled,
    settings,
    unix_socket,
)


def test_throttled_writes_one_line_per_interval_with_the_count_it_stands_for() -> None:
    now = [0.0]
    out: list[str] = []
    say = Throttled(10.0, clock=lambda: now[0], write=out.append)
    assert say("accept failed")
    for _ in range(500):
        now[0] += 0.01
        assert not say("accept failed")
    now[0] = 10.5
    assert say("accept failed")
    assert out == ["accept failed", "accept failed (500 more since the last report)"]


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    b = Backoff(0.05, 2.0)
    assert [b.next() for _ in range(8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    b.reset()
    assert b.next() == 0.05


def test_the_descriptor_reserve_grows_with_the_fleet() -> None:
    fleet = [0]
    budget = Budget(1000, lambda: fleet[0])
    assert budget.leaves_room(935) and not budget.leaves_room(936)
    fleet[0] = 100  # 64 + 8 per instance
    assert budget.leaves_room(135) and not budget.leaves_room(136)


def test_settings_from_the_environment() -> None:
    s = settings({"CORRAL_HTTP_HEADER_TIMEOUT": "0.5", "CORRAL_METRICS_MAX_CONNECTIONS": "4"})
    assert s.limits.header_timeout == 0.5 and s.metrics_cap == 4 and s.api_cap == 256
    assert s.metrics_limits.header_timeout == 0.5
    assert s.metrics_limits.max_body_bytes < 1 << 16 <= s.limits.max_body_bytes
    for bad in ({"CORRAL_HTTP_IDLE_TIMEOUT": "soon"}, {"CORRAL_API_MAX_CONNECTIONS": "0"},
                {"CORRAL_API_MAX_CONNECTIONS": "2.5"}, {"CORRAL_HTTP_BODY_TIMEOUT": "inf"}):
        with pytest.raises(SettingError, match=next(iter(bad))):
            settings(bad)


class Served:
    """A listener on a temp socket whose handler answers ``ok`` (or waits on ``hold``)."""

    def __init__(self, path: Path, *, cap: int, limits: Limits, soft: int = 1 << 20) -> None:
        self.path = str(path)
        self.hold: asyncio.Event | None = None
        self.seen: list[Request] = []

        async def handler(req: Request) -> Reply:
            self.seen.append(req)
            if self.hold is not None:
                await self.hold.wait()
            return Reply(200, b"ok", "text/plain")

        self.listener = Listener(unix_socket(self.path), handler, name="test", cap=cap,
                                 limits=limits, budget=Budget(soft))
        self.clients: list[asyncio.StreamWriter] = []

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        r, w = await asyncio.open_unix_connection(self.path)
        self.clients.append(w)
        return r, w

    async def close(self) -> None:
        self.listener.close()
        for w in self.clients:
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()
        await asyncio.sleep(0)

    async def get(self, head: bytes = b"GET /x HTTP/1.0\r\n\r\n") -> bytes:
        r, w = await self.connect()
        w.write(head)
        data = await asyncio.wait_for(r.read(), 5)
        w.close()
        return data


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.005)


def test_over_the_cap_a_new_connection_takes_the_place_of_the_oldest_idle_one(
        tmp_path: Path) -> None:
    async def go() -> None:
        s = Served(tmp_path / "s", cap=4, limits=Limits())
        idle = [await s.connect() for _ in range(4)]
        await settle()
        assert len(s.listener.conns) == 4
        assert (await s.get()).endswith(b"ok")  # served although the cap was reached
        assert await asyncio.wait_for(idle[0][0].read(), 5) == b""  # the oldest was dropped
        assert s.listener.evicted == 1 and len(s.listener.conns) == 3
        await s.close()

    run(go())


def test_busy_connections_are_never_dropped_the_new_one_gets_503(tmp_path: Path) -> None:
    async def go() -> None:
        s = Served(tmp_path / "s", cap=2, limits=Limits())
        s.hold = asyncio.Event()
        busy = [await s.connect() for _ in range(2)]
        for _, w in busy:
            w.write(b"GET /slow HTTP/1.0\r\n\r\n")
        await settle()
        r, _ = await s.connect()
        assert (await asyncio.wait_for(r.read(), 5)).startswith(b"HTTP/1.1 503 ")
        s.hold.set()
        for r, _ in busy:
            assert (await asyncio.wait_for(r.read(), 5)).endswith(b"ok")
        assert s.listener.refused == 1
        await s.close()

    run(go())


def test_past_the_descriptor_budget_idle_connections_make_room(tmp_path: Path) -> None:
    async def go() -> None:
        # a budget that any new descriptor breaks: the listener may only trade idle ones
        s = Served(tmp_path / "s", cap=100, limits=Limits(), soft=64)
        first = await s.connect()
        await settle()
        assert len(s.listener.conns) == 0  # nothing idle to trade: refused
        assert (await asyncio.wait_for(first[0].read(), 5)).startswith(b"HTTP/1.1 503")
        await s.close()

    run(go())


def test_a_silent_connection_is_closed_after_the_header_timeout(tmp_path: Path) -> None:
    async def go() -> None:
        s = Served(tmp_path / "s", cap=10, limits=Limits(header_timeout=0.2))
        r, _ = await s.connect()
        t0 = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(r.read(), 5) == b""
        assert 0.15 < asyncio.get_running_loop().time() - t0 < 2
        r2, w2 = await s.connect()  # a head sent by halves and never finished: 408
        w2.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert (await asyncio.wait_for(r2.read(), 5)).startswith(b"HTTP/1.1 408 ")
        await s.close()

    run(go())


def test_keep_alive_connections_idle_out(tmp_path: Path) -> None:
    async def go() -> None:
        s = Served(tmp_path / "s", cap=10, limits=Limits(idle_timeout=0.2))
        r, w = await s.connect()
        w.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = asyncio.get_running_loop().time()
        data = await asyncio.wait_for(r.read(), 5)  # the reply, then EOF once idle
        assert data.endswith(b"ok") and b"200" in data
        assert 0.15 < asyncio.get_running_loop().time() - t0 < 2
        await s.close()

    run(go())


def test_a_body_sent_too_slowly_gets_408(tmp_path: Path) -> None:
    async def go() -> None:
        s = Served(tmp_path / "s", cap=10, limits=Limits(body_timeout=0.2))
        r, w = await s.connect()
        w.write(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        assert (await asyncio.wait_for(r.read(), 5)).startswith(b"HTTP/1.1 408 ")
        assert not s.seen
        await s.close()

    run(go())


def test_oversized_heads_and_bodies_are_refused(tmp_path: Path) -> None:
    async def go() -> None:
        s = Served(tmp_path / "s", cap=10, limits=Limits(max_header_bytes=1024,
                                                         max_body_bytes=100))
        big_head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4096 + b"\r\n\r\n"
        assert (await s.get(big_head)).startswith(b"HTTP/1.1 431 ")
        declared = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n"
        assert (await s.get(declared)).startswith(b"HTTP/1.1 413 ")
        chunked = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + (b"40\r\n" + b"b" * 64 + b"\r\n") * 2 + b"0\r\n\r\n")
        assert (await s.get(chunked)).startswith(b"HTTP/1.1 413 ")
        assert (await s.get(b"POST / HTTP/1.0\r\nContent-Length: 100\r\n\r\n" + b"c" * 100)
                ).endswith(b"ok")
        assert len(s.seen) == 1
        await s.close()

    run(go())


def test_accept_out_of_descriptors_pauses_and_reports_once(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    import errno

    class Exhausted(socket.socket):
        failures = 0

        def accept(self) -> Any:
            if Exhausted.failures < 3:
                Exhausted.failures += 1
                raise OSError(errno.EMFILE, "Too many open files")
            return super().accept()

    async def go() -> None:
        path = str(tmp_path / "s")
        plain = unix_socket(path)
        sock = Exhausted(fileno=plain.detach())

        async def handler(req: Request) -> Reply:
            return Reply(200, b"ok", "text/plain")

        listener = Listener(sock, handler, name="test", cap=10, limits=Limits(),
                            budget=Budget(1 << 20))
        t0 = asyncio.get_running_loop().time()
        r, w = await asyncio.open_unix_connection(path)
        w.write(b"GET / HTTP/1.0\r\n\r\n")
        assert (await asyncio.wait_for(r.read(), 5)).endswith(b"ok")
        w.close()
        await w.wait_closed()
        # three failures: paused 0.05 + 0.1 + 0.2 s, then served
        assert asyncio.get_running_loop().time() - t0 >= 0.3
        listener.close()

    run(go())
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 1 and "Too many open files; accepting paused" in lines[0]


def test_the_cli_client_reads_the_503_of_a_full_daemon_as_one_line(tmp_path: Path) -> None:
    from corral.api.client import ApiError, Client

    async def go() -> None:
        s = Served(tmp_path / "s", cap=1, limits=Limits())
        s.hold = asyncio.Event()
        r, w = await s.connect()
        w.write(b"GET /slow HTTP/1.0\r\n\r\n")
        await settle()
        with pytest.raises(ApiError, match="too many connections open") as err:
            await asyncio.to_thread(Client(s.path, timeout=5).request, "GET", "/v1/status",
                                    {"pad": "x" * 2000})
        assert "retry in a moment" in err.value.fix
        s.hold.set()
        assert (await asyncio.wait_for(r.read(), 5)).endswith(b"ok")
        await s.close()

    run(go())


def test_a_reply_the_peer_does_not_read_is_dropped_after_the_send_timeout(
        tmp_path: Path) -> None:
    async def go() -> None:
        path = str(tmp_path / "s")

        async def handler(req: Request) -> Reply:
            return Reply(200, b"x" * (32 << 20), "text/plain")  # far past the socket buffers

        listener = Listener(unix_socket(path), handler, name="test", cap=4,
                            limits=Limits(send_timeout=0.3), budget=Budget(1 << 20))
        _r, w = await asyncio.open_unix_connection(path)
        w.write(b"GET / HTTP/1.0\r\n\r\n")
        await asyncio.sleep(0.2)
        assert len(listener.conns) == 1
        for _ in range(100):
            await asyncio.sleep(0.05)
            if not listener.conns:
                break
        assert not listener.conns  # the reply was given up and the descriptor freed
        w.close()
        with contextlib.suppress(OSError):
            await w.wait_closed()
        listener.close()

    run(go())
