"""Health probes against real targets: a TCP listener, an HTTP server, real commands, and
log lines; thresholds checked with an instant clock."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import TypeAdapter

from corral.manifest.spec import Probe
from corral.runtime.health import LogWatch, ProbeLoop, check, taken_ports


def probe(**fields: Any) -> Probe:
    return TypeAdapter(Probe).validate_python(fields)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def http_server(status: int) -> AsyncIterator[int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.0 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_tcp_probe_passes_on_a_listener_and_fails_on_a_closed_port() -> None:
    async def body() -> None:
        async with http_server(200) as port:
            ok, detail = await check(probe(tcp=port), env={}, workdir=".", log_watch=None)
            assert ok, detail
        ok, detail = await check(probe(tcp=free_port()), env={}, workdir=".", log_watch=None)
        assert not ok and "tcp 127.0.0.1:" in detail

    run(body())


@pytest.mark.parametrize(("status", "passes"), [(200, True), (302, True), (503, False)])
def test_http_probe_judges_the_status(status: int, passes: bool) -> None:
    async def body() -> None:
        async with http_server(status) as port:
            ok, detail = await check(probe(http={"port": port, "path": "/health"}), env={},
                                     workdir=".", log_watch=None)
            assert ok is passes
            assert f"status {status}" in detail

    run(body())


def test_http_probe_with_listed_statuses_only() -> None:
    async def body() -> None:
        async with http_server(204) as port:
            ok, _ = await check(probe(http={"port": port, "status": [200]}), env={},
                                workdir=".", log_watch=None)
            assert not ok

    run(body())


def test_exec_probe_uses_exit_code_env_and_workdir(tmp_path: Any) -> None:
    (tmp_path / "flag").write_text("x")

    async def body() -> None:
        good = probe(exec='sh -c "test -f flag && test \\"$TOKEN\\" = yes"')
        ok, detail = await check(good, env={"TOKEN": "yes", "PATH": "/usr/bin:/bin"},
                                 workdir=str(tmp_path), log_watch=None)
        assert ok, detail
        ok, detail = await check(good, env={"TOKEN": "no", "PATH": "/usr/bin:/bin"},
                                 workdir=str(tmp_path), log_watch=None)
        assert not ok and "exit 1" in detail
        missing = probe(exec="no-such-command-here")
        ok, detail = await check(missing, env={}, workdir=str(tmp_path), log_watch=None)
        assert not ok and "no-such-command-here" in detail

    run(body())


def test_exec_probe_times_out_and_kills_the_command() -> None:
    async def body() -> None:
        slow = probe(exec="sleep 30", timeout="0.2s")
        started = asyncio.get_running_loop().time()
        ok, detail = await check(slow, env={"PATH": "/usr/bin:/bin"}, workdir=".",
                                 log_watch=None)
        assert not ok and "timed out after 0.2s" in detail
        assert asyncio.get_running_loop().time() - started < 5

    run(body())


def test_log_line_probe_follows_the_watch() -> None:
    async def body() -> None:
        p = probe(log_line={"pattern": r"ready on port \d+"})
        watch = LogWatch(p.log_line.pattern if p.log_line else "")
        ok, _ = await check(p, env={}, workdir=".", log_watch=watch)
        assert not ok
        watch.lines("stdout", b"starting\nready on port 80\n")
        ok, detail = await check(p, env={}, workdir=".", log_watch=watch)
        assert ok and "seen" in detail

    run(body())


def test_taken_ports_names_only_ports_someone_listens_on() -> None:
    async def body() -> None:
        async with http_server(200) as port:
            closed = free_port()
            found = await taken_ports([probe(tcp=port), probe(http={"port": closed}), None])
            assert found == [("127.0.0.1", port, "tcp")]

    run(body())


class InstantClock:
    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def test_probe_loop_thresholds_and_initial_delay() -> None:
    """failure_threshold failures in a row make it unhealthy, success_threshold passes healthy;
    one verdict per change, none before initial_delay."""

    async def body() -> None:
        port = free_port()
        clock = InstantClock()
        verdicts: list[tuple[bool, float]] = []
        p = probe(tcp=port, initial_delay="5s", period="1s", failure_threshold=3,
                  success_threshold=2)
        loop = ProbeLoop(p, lambda ok, _d: verdicts.append((ok, clock.now)), env={},
                         workdir=".", log_watch=None, clock=clock)
        task = asyncio.create_task(loop.run())
        while not verdicts:
            await asyncio.sleep(0.01)
        assert verdicts == [(False, 7.0)]  # checks at 5, 6, 7 failed
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        try:
            while len(verdicts) < 2:
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            server.close()
        assert verdicts[1][0] is True
        assert loop.healthy is True

    run(body())


def test_a_cancel_that_meets_a_finished_check_still_ends_the_probe(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.11's wait_for hands back the result of a check that finished as its task was
    cancelled, swallowing the cancel: a probe loop then ran on for ever, and the run's end
    that waits for it hung (seen as an instance stuck in 'stopping')."""
    from corral.runtime import health

    outer: list[asyncio.Task[Any]] = []

    async def finished_as_cancelled(*_: Any) -> tuple[bool, str]:
        outer[0].cancel()  # the probe is cancelled in the very step its check ends
        return True, "ok"

    monkeypatch.setattr(health, "_check", finished_as_cancelled)

    async def body() -> None:
        async def one() -> tuple[bool, str]:
            return await check(probe(tcp=1), env={}, workdir="/", log_watch=None)

        task = asyncio.create_task(one())
        outer.append(task)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    run(body())
