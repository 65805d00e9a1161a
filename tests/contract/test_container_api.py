"""The engines' REST API as corral speaks it, on real Podman and real Docker: what a start is
made of (create, start, logs from the start with stdout and stderr apart, wait, remove), the
engine's own words on a refusal, the CLI fallback doing the same, and Podman's service: one
per process, reused, gone with its owner — even one killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from corral.drivers.container import service
from corral.drivers.container.driver import ContainerDriver
from corral.drivers.container.engine import Engine, EngineError
from corral.drivers.container.runargs import RunSpec
from corral.drivers.container.transport import auto as engine_ops
from corral.drivers.container.transport.base import Ops
from corral.errors import DriverError
from tests.contract.test_container import ENGINES, make_task, run, run_to_end
from tests.contract.test_driver_contract import Collect
from tests.support.engines import IMAGE

# a partial line, a line, stderr between, and an exit code: what a follow must keep exact
PRINTS = "printf part; sleep 0.2; echo ial; echo oops >&2; echo end; exit 3"


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    found: Engine = request.getfixturevalue(f"{request.param}_engine")
    return found


@pytest.fixture
def fresh_choice() -> Iterator[None]:
    """Each test chooses API or CLI anew (the choice is kept per process)."""
    saved = dict(engine_ops._chosen)
    engine_ops._chosen.clear()
    yield
    engine_ops._chosen.clear()
    engine_ops._chosen.update(saved)


def _spec(name: str, *argv: str, **labels: str) -> RunSpec:
    return RunSpec(name=name, image=IMAGE, argv=argv, labels={"corral.test": "api", **labels},
                   env={"GREETING": "hi there"}, network="none")


async def _round_trip(ops: Ops, name: str) -> tuple[int | None, dict[str, bytes], list[str]]:
    await ops.remove(name)
    cid = await ops.run(_spec(name, "sh", "-c", f'echo "$GREETING"; {PRINTS}', run=name),
                        cwd="/tmp")
    try:
        found = await ops.containers({"corral.test": "api", "run": name})
        got: dict[str, bytes] = {"stdout": b"", "stderr": b""}

        def feed(stream: str, data: bytes) -> None:
            got[stream] += data

        follow = asyncio.ensure_future(ops.logs(cid).pump(feed))  # type: ignore[arg-type]
        code = await ops.wait(cid)
        await asyncio.wait_for(follow, 10)
        state = await ops.state(cid)
        assert state is not None and state["ExitCode"] == 3
        return code, got, [f.state for f in found if f.id == cid]
    finally:
        await ops.remove(cid)
        assert await ops.containers({"corral.test": "api", "run": name}) == []


@pytest.mark.parametrize("via", ["api", "cli"])
def test_a_container_round_trip_is_the_same_through_the_api_and_the_cli(
        engine: Engine, via: str, fresh_choice: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_CONTAINER_API", "auto" if via == "api" else "cli")

    async def go() -> None:
        ops = await engine_ops.for_engine(engine)
        assert ops.via == via
        code, got, states = await _round_trip(ops, f"corral-apitest-{via}")
        assert code == 3
        assert got == {"stdout": b"hi there\npartial\nend\n", "stderr": b"oops\n"}
        assert states in (["running"], ["exited"])  # listed by its labels while it lived

    run(go())


@pytest.mark.parametrize("via", ["api", "cli"])
def test_hosts_entries_resolve_inside_through_the_api_and_the_cli(
        engine: Engine, via: str, fresh_choice: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other agents' names (``RunSpec.hosts``) as each transport gives them, on the
    host's network (where a container depending on a host agent runs)."""
    monkeypatch.setenv("CORRAL_CONTAINER_API", "auto" if via == "api" else "cli")

    async def go() -> None:
        ops = await engine_ops.for_engine(engine)
        assert ops.via == via
        name = f"corral-apitest-hosts-{via}"
        await ops.remove(name)
        spec = replace(_spec(name, "getent", "hosts", "my-srv", run=name), network="host",
                       hosts=(("my-srv", "127.0.0.1"),))
        cid = await ops.run(spec, cwd="/tmp")
        try:
            got: dict[str, bytes] = {"stdout": b"", "stderr": b""}

            def feed(stream: str, data: bytes) -> None:
                got[stream] += data

            follow = asyncio.ensure_future(ops.logs(cid).pump(feed))  # type: ignore[arg-type]
            assert await ops.wait(cid) == 0, got
            await asyncio.wait_for(follow, 10)
            assert got["stdout"].split() == [b"127.0.0.1", b"my-srv"]
        finally:
            await ops.remove(cid)

    run(go())


def test_the_engine_refusing_is_its_own_message(engine: Engine, fresh_choice: None) -> None:
    async def go() -> None:
        ops = await engine_ops.for_engine(engine)
        assert ops.via == "api"
        spec = RunSpec(name="corral-apitest-refused", image="localhost/no-such-image:1",
                       argv=("true",), labels={}, env={}, network="none")
        with pytest.raises(EngineError, match=r"(?i)no such image|image not known"):
            await ops.run(spec, cwd="/tmp")
        assert not await ops.image_exists("localhost/no-such-image:1")
        assert await ops.image_exists(IMAGE)
        await ops.remove("corral-apitest-lookup")
        cid = await ops.run(_spec("corral-apitest-lookup", "sleep", "30"), cwd="/tmp")
        try:
            for exe, missing in (("no-such-command-here", True), ("sleep", False),
                                 ("/bin/sleep", False), ("/etc/passwd", True), ("/usr", True),
                                 ("sh", False)):
                assert await ops.command_missing(IMAGE, exe, cid) is missing, exe
        finally:
            await ops.remove(cid)

    run(go())


def test_the_driver_works_on_the_cli_fallback(engine: Engine, tmp_path: Path, fresh_choice: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no API answers (here: asked for), the CLI does every step, env values kept
    out of its argv."""
    monkeypatch.setenv("CORRAL_CONTAINER_API", "cli")

    async def go() -> None:
        task = make_task(tmp_path, {"command": ["sh", "-c", 'echo "$GREETING"; exit 4'],
                                    "network": "none"}, env={"GREETING": "hi there"},
                         container={"image": IMAGE})
        driver = ContainerDriver(engine)
        assert (await driver.ops(engine)).via == "cli"
        assert await run_to_end(driver, task) == (4, "hi there\n", "")

    run(go())


@pytest.mark.parametrize("via", ["api", "cli"])
def test_a_command_missing_from_the_image_is_a_clear_start_error(
        engine: Engine, via: str, tmp_path: Path, fresh_choice: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As at every other level, not the init's exit 127 after a successful start; and the
    found command is not looked up again."""
    monkeypatch.setenv("CORRAL_CONTAINER_API", "auto" if via == "api" else "cli")

    async def go() -> None:
        driver = ContainerDriver(engine)
        task = make_task(tmp_path, {"command": ["no-such-command-here"], "network": "none"},
                         container={"image": IMAGE})
        with pytest.raises(DriverError, match=r"agents\.a: command not found: "
                                              r"no-such-command-here \(in image "):
            await driver.start(task, Collect())
        labels = {"corral.project": "ct", "corral.instance": task.instance}
        assert await (await driver.ops(engine)).containers(labels) == []
        ok = make_task(tmp_path, {"command": ["sh", "-c", "echo ran"], "network": "none"},
                       container={"image": IMAGE})
        assert await run_to_end(driver, ok) == (0, "ran\n", "")
        assert (engine.name, IMAGE, "sh") in driver.prereqs.commands

    run(go())


def test_a_stop_is_prompt_and_keeps_the_last_words(engine: Engine, tmp_path: Path) -> None:
    """The exit is asked for more often once the signal is sent, and the log's rest is read
    in one go rather than waiting for the engine to end its follow (Podman polls for that):
    a stop takes a fraction of a second, and what the agent printed on its way out is kept."""
    script = "trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done"

    async def go() -> None:
        task = make_task(tmp_path, {"command": ["sh", "-c", script], "network": "none"},
                         container={"image": IMAGE})
        driver, out = ContainerDriver(engine), Collect()
        handle = await driver.start(task, out)
        for _ in range(100):
            if "up" in out.text():
                break
            await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await driver.stop(handle, sig=signal.SIGTERM, timeout=10)
        result = await driver.wait(handle)
        assert loop.time() - began < 1.0
        assert (result.code, out.text()) == (0, "up\nbye\n")
        assert out.closed == {"stdout", "stderr"}

    run(go())


def test_what_was_known_is_asked_again_when_it_went_stale(engine: Engine,
                                                           tmp_path: Path) -> None:
    """The project network is checked once per fleet; removed by hand meanwhile, the next
    start makes it again instead of failing."""
    async def go() -> None:
        task = make_task(tmp_path, {"command": ["sh", "-c", "echo on the network"]},
                         project="ctstale", container={"image": IMAGE})
        driver = ContainerDriver(engine)
        try:
            assert await run_to_end(driver, task) == (0, "on the network\n", "")
            assert (await engine.run("network", "rm", "corral-ctstale")).ok
            assert await run_to_end(driver, task) == (0, "on the network\n", "")
        finally:
            await engine.run("network", "rm", "corral-ctstale")

    run(go())


# --- Podman's service -------------------------------------------------------------------------


def _services_of(pid: int) -> list[int]:
    """``podman system service`` processes whose parent is ``pid``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[1].split()
        if cmd[1:3] == [b"system", b"service"] and int(fields[1]) == pid and fields[0] != b"Z":
            found.append(int(name))
    return found


def test_podman_service_is_started_once_reused_and_stopped(podman_engine: Engine,
                                                            tmp_path: Path,
                                                            fresh_choice: None) -> None:
    if any(os.path.exists(s) for s in service.candidates(podman_engine)):
        pytest.skip("a Podman API socket is already served here: corral starts none")
    service.close_all()

    async def go() -> None:
        # many instances starting at once ask at once: one service, and each caller can use
        # it the moment it is handed over
        many = await asyncio.gather(*(engine_ops.for_engine(podman_engine) for _ in range(5)))
        assert all([await o.image_exists(IMAGE) for o in many])
        sockets = {getattr(o, "socket", None) for o in many}
        task = make_task(tmp_path, {"command": ["sleep", "0.1"], "network": "none"},
                         container={"image": IMAGE})
        for _ in range(2):  # two drivers, as tests and `corral build` + the daemon make
            assert (await run_to_end(ContainerDriver(podman_engine), task))[0] == 0
            sockets.add(getattr(await engine_ops.for_engine(podman_engine), "socket", None))
        assert len(sockets) == 1 and None not in sockets
        assert len(_services_of(os.getpid())) == 1
        await ContainerDriver(podman_engine).close()  # the daemon's exit
        assert _services_of(os.getpid()) == []
        assert not os.path.exists(str(sockets.pop()))  # its private dir went with it

    run(go())


def test_podman_service_dies_with_a_killed_owner(podman_engine: Engine) -> None:
    """A supervisor SIGKILLed leaves its containers for the next one, but not its service."""
    if any(os.path.exists(s) for s in service.candidates(podman_engine)):
        pytest.skip("a Podman API socket is already served here: corral starts none")
    owner = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import asyncio, sys, time
        from corral.drivers.container import service
        from corral.drivers.container.engine import Engine
        sock = asyncio.run(service.socket_for(Engine("podman", {podman_engine.binary!r})))
        print(sock, flush=True)
        time.sleep(300)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        sock = owner.stdout.readline().strip()
        assert sock.endswith("podman.sock")
        services = _services_of(owner.pid)
        assert len(services) == 1
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    deadline = time.monotonic() + 10
    while _alive(services[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(services[0]), "the service outlived its owner"
    # its dir (log, socket) is left for the next service started on this host to sweep
    left = os.path.dirname(sock)
    assert os.path.isdir(left)
    service.close_all()
    try:
        assert asyncio.run(service.socket_for(podman_engine)) is not None
        assert not os.path.exists(left)
    finally:
        service.close_all()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
