"""One contract, every driver: start, output, wait, stop (whole tree), exit codes, recover.

The generic cases (``case``) also run a third-party driver: ``tinyexec``, a package built by
``tests/support/thirdparty.py``, pip-installed for this module, found through the ``corral.drivers``
entry point, with its agents' ``tinyexec:`` block validated and decoded like any other."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from corral.drivers import registry
from corral.drivers.base import Driver, HostProcesses, Task
from corral.drivers.container.driver import ContainerDriver
from corral.drivers.fake import FakeDriver
from corral.drivers.host.bwrap import find_bwrap
from corral.drivers.process import ProcessDriver
from corral.drivers.ray.driver import RayDriver
from corral.drivers.sandbox import SandboxDriver
from corral.drivers.venv import VenvDriver
from corral.drivers.vm.driver import VmDriver
from corral.errors import DriverError
from corral.manifest import validation
from tests.support import thirdparty

PY = sys.executable


class Collect:
    def __init__(self) -> None:
        self.data: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.closed: set[str] = set()

    def feed(self, stream: str, data: bytes) -> None:
        self.data[stream] += data

    def eof(self, stream: str) -> None:
        self.closed.add(stream)

    def text(self, stream: str = "stdout") -> str:
        return self.data[stream].decode()


def _fake_spec(script: str) -> dict[str, Any]:
    """Translate the tiny behaviours the contract needs into fake-driver steps."""
    steps = {
        "hello": [{"print": ["hello"]}, {"print": ["oops"], "stream": "stderr"}, {"exit": 3}],
        "forever": [{"print": ["up"]}],
        "exit0": [{"exit": 0}],
    }[script]
    return {"command": ["fake"], "isolation": "fake", "fake": {"steps": steps}}


SCRIPTS = {
    "hello": "import sys; print('hello'); print('oops', file=sys.stderr); sys.exit(3)",
    "forever": "import time; print('up', flush=True); time.sleep(300)",
    "exit0": "pass",
}


# The busybox guest of the vm level has no Python: the same behaviours in sh.
SH_SCRIPTS = {
    "hello": "echo hello; echo oops >&2; exit 3",
    "forever": "echo up; exec sleep 300",
    "exit0": "true",
}


class Case:
    def __init__(self, name: str, make: Callable[[], Driver], tmp: Path) -> None:
        self.name = name
        self.isolation = name.partition("-")[0]  # container-podman -> container
        self.driver = make()
        self.tmp = tmp
        # a container's build context is its workdir: keep the run and cache dirs out of it
        self.workdir = tmp / "app" if self.isolation == "container" else tmp
        self.workdir.mkdir(exist_ok=True)
        self.ray_address = ""  # the test cluster's, for the ray placement

    def task(self, script: str, *, instance: str = "a.1") -> Task:
        if self.name == "fake":
            raw = _fake_spec(script)
        elif self.name == "vm":
            raw = {"command": ["sh", "-c", SH_SCRIPTS[script]], "isolation": "vm"}
        elif self.name == thirdparty.NAME:  # its own block, through the entry point
            raw = {"command": [SH_SCRIPTS[script]], "isolation": thirdparty.NAME,
                   thirdparty.NAME: {"interpreter": "/bin/sh"}}
        elif self.name == "ray":  # a process agent placed on the test cluster
            raw = {"command": ["python", "-c", SCRIPTS[script]], "isolation": "process",
                   "placement": "ray", "ray": {"address": self.ray_address}}
        else:
            raw = {"command": ["python", "-c", SCRIPTS[script]], "isolation": self.isolation}
            if self.name == "venv":
                raw["venv"] = {"packages": []}
        spec = validation.agent(raw)
        return Task(project="t", agent="a", instance=instance, index=1, spec=spec,
                    workdir=str(self.workdir), run_dir=str(self.tmp / "run" / instance),
                    cache_dir=str(self.tmp / "cache"),
                    env={"PATH": f"{Path(PY).parent}:/usr/bin:/bin", "HOME": str(self.tmp)})


DRIVERS: dict[str, Callable[[], Driver]] = {
    "process": ProcessDriver, "venv": VenvDriver, "fake": FakeDriver, "sandbox": SandboxDriver,
    "vm": VmDriver, "ray": RayDriver,
}
NEEDS = {"sandbox": (find_bwrap, "bubblewrap (bwrap) is not installed: apt-get install "
                                 "bubblewrap (scripts/install.sh --test does)")}


CONTAINERS = ["container-podman", "container-docker"]


def _forget_installed() -> None:
    registry._table.cache_clear()
    registry.blocks.cache_clear()
    registry.placements.cache_clear()


@pytest.fixture(scope="module")
def installed_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[type[Driver]]:
    """The third-party driver, pip-installed and on the path for this module only (the
    registry forgets it after, so other tests see only the built-ins)."""
    site = str(thirdparty.install(tmp_path_factory.mktemp("tinyexec")))
    sys.path.insert(0, site)
    _forget_installed()
    try:
        assert thirdparty.NAME in registry.names()
        yield registry.load(thirdparty.NAME)
    finally:
        sys.path.remove(site)
        _forget_installed()


def _container(name: str, request: pytest.FixtureRequest) -> Callable[[], Driver]:
    """Both engines, each from its session fixture (skipped with the reason when it cannot
    run a container here)."""
    engine = request.getfixturevalue(f"{name.partition('-')[2]}_engine")
    return lambda: ContainerDriver(engine)


@pytest.fixture(params=[pytest.param(n, marks=pytest.mark.vm) if n == "vm" else n
                        for n in [*sorted(DRIVERS), thirdparty.NAME, *CONTAINERS]])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    if request.param in CONTAINERS:
        return Case(request.param, _container(request.param, request), tmp_path)
    if request.param == thirdparty.NAME:
        return Case(request.param, request.getfixturevalue("installed_driver"), tmp_path)
    found, why = NEEDS.get(request.param, (lambda: True, ""))
    if not found():
        pytest.skip(why)
    if request.param == "vm":
        request.getfixturevalue("vm_guest")  # built once per session, or skipped with why
    made = Case(request.param, DRIVERS[request.param], tmp_path)
    if request.param == "ray":  # its bridge process is closed at the end of each run
        made.ray_address = request.getfixturevalue("ray_cluster").address
        CLOSING.append(made.driver)
        request.addfinalizer(CLOSING.clear)
    return made


CLOSING: list[Driver] = []  # drivers closed in the loop of each run (their helper processes)


def run(coro: Any) -> Any:
    async def then_close() -> Any:
        try:
            return await coro
        finally:
            for driver in CLOSING:
                await driver.close()

    return asyncio.run(asyncio.wait_for(then_close(), 60))


def test_output_and_exit_code(case: Case) -> None:
    async def go() -> None:
        task = case.task("hello")
        out = Collect()
        await case.driver.prepare(task, None)
        handle = await case.driver.start(task, out)
        result = await case.driver.wait(handle)
        assert result.code == 3
        assert not result.success
        assert out.text() == "hello\n"
        assert out.text("stderr") == "oops\n"
        assert result.describe() == "exited with code 3"

    run(go())


def test_a_lent_exit_future_resolves_with_the_exit_and_is_left_to_wait(case: Case) -> None:
    async def go() -> None:
        task = case.task("hello")
        await case.driver.prepare(task, None)
        handle = await case.driver.start(task, Collect())
        lent = case.driver.exit_future(handle)
        if lent is not None:  # optional: a driver without one is waited on as a task
            await asyncio.wait_for(asyncio.shield(lent), 30)
            assert not lent.cancelled()
        result = await case.driver.wait(handle)
        assert result.code == 3
        if lent is not None:
            assert lent.result() == result
            # forgotten once waited for and its pipes closed (in a sandbox the agent's own
            # processes may close them a moment after bwrap exits)
            for _ in range(100):
                if case.driver.exit_future(handle) is None:
                    break
                await asyncio.sleep(0.02)
            assert case.driver.exit_future(handle) is None

    run(go())


def test_success(case: Case) -> None:
    async def go() -> None:
        task = case.task("exit0")
        await case.driver.prepare(task, None)
        handle = await case.driver.start(task, Collect())
        assert (await case.driver.wait(handle)).success

    run(go())


HOST = {"process", "venv", "sandbox", "vm"}  # their instances are the supervisor's children


def test_a_driver_declares_whether_its_instances_are_host_processes(case: Case) -> None:
    """``HostProcesses`` is declared, not probed: a host driver knows its live pids (the
    daemon's orphan sweep leaves them to it), and forgets each once it was waited for."""
    assert isinstance(case.driver, HostProcesses) == (case.isolation in HOST)

    async def go() -> None:
        task = case.task("exit0")
        await case.driver.prepare(task, None)
        env = case.driver.environment(task)  # declared by every driver, with a default
        assert isinstance(env, dict) and env.get("PATH")
        handle = await case.driver.start(task, Collect())
        if isinstance(case.driver, HostProcesses):
            assert handle.pid is not None and handle.pid in case.driver.known_pids()
        assert (await case.driver.wait(handle)).success
        if isinstance(case.driver, HostProcesses):
            for _ in range(100):  # a sandbox's inner processes may close its pipes late
                if handle.pid not in case.driver.known_pids():
                    break
                await asyncio.sleep(0.02)
            assert handle.pid not in case.driver.known_pids()

    run(go())


def test_stop_delivers_the_signal(case: Case) -> None:
    async def go() -> None:
        task = case.task("forever")
        out = Collect()
        await case.driver.prepare(task, None)
        handle = await case.driver.start(task, out)
        # stop once it runs (a VM takes seconds to boot), not at a guessed moment
        deadline = time.monotonic() + 45
        while "up" not in out.text() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await case.driver.stop(handle, sig=signal.SIGTERM, timeout=5)
        result = await case.driver.wait(handle)
        assert result.signal == signal.SIGTERM
        assert "up" in out.text()

    run(go())


def _left_of_run(run_id: str) -> list[int]:
    """Live processes (not zombies) that carry this start's marker."""
    from corral.drivers.host.proctree import MARKER

    needle = f"{MARKER}={run_id}".encode()
    found = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes() and not _zombie(pid):
                found.append(pid)
        except OSError:
            continue
    return found


# a child that ignores SIGTERM and a grandchild that left the session (its pid in
# grandchild.pid): what a stop must still end, at every level that runs a process tree
STUBBORN_TREE = textwrap.dedent("""
    import os, signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            open('grandchild.pid', 'w').write(str(os.getpid()))
            time.sleep(300)
        os._exit(0)
    print('ready', flush=True)
    time.sleep(300)
""")


@pytest.mark.parametrize("name", ["process", "venv", "sandbox"])
def test_stop_kills_the_whole_tree_after_the_grace_period(name: str, tmp_path: Path) -> None:
    """A child that ignores SIGTERM and a grandchild that left the session both die."""
    if name == "sandbox" and find_bwrap() is None:
        pytest.skip(NEEDS["sandbox"][1])
    c = Case(name, DRIVERS[name], tmp_path)
    code = STUBBORN_TREE

    async def go() -> None:
        task = c.task("forever")
        task = Task(**{**{f: getattr(task, f) for f in task.__slots__},
                       "spec": replace(task.spec, command=["python", "-c", code])})
        await c.driver.prepare(task, None)
        handle = await c.driver.start(task, Collect())
        pidfile = tmp_path / "grandchild.pid"
        for _ in range(100):
            if pidfile.exists() and pidfile.read_text():
                break
            await asyncio.sleep(0.05)
        grandchild = int(pidfile.read_text())  # in a sandbox: its pid in the sandbox's pid ns
        assert len(_left_of_run(handle.data["run_id"])) >= 2
        started = time.monotonic()
        await c.driver.stop(handle, sig=signal.SIGTERM, timeout=0.5)
        result = await c.driver.wait(handle)
        assert time.monotonic() - started >= 0.5
        # in a sandbox the handle is bwrap's, which SIGTERM ends at once; the agent inside
        # ignored it and still got its grace period (above) before the kill
        assert result.signal == (signal.SIGTERM if name == "sandbox" else signal.SIGKILL)
        for _ in range(50):
            if not _left_of_run(handle.data["run_id"]):
                break
            await asyncio.sleep(0.02)
        assert _left_of_run(handle.data["run_id"]) == []
        if name != "sandbox":
            assert not os.path.exists(f"/proc/{grandchild}") or _zombie(grandchild)

    run(go())


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return True


@pytest.mark.parametrize("name", ["process", "venv", "sandbox"])
def test_recover_reattaches_output_of_a_running_instance(name: str, tmp_path: Path) -> None:
    if name == "sandbox" and find_bwrap() is None:
        pytest.skip(NEEDS["sandbox"][1])
    """A second driver instance (a restarted daemon) re-attaches by handle and keeps reading."""
    c = Case(name, DRIVERS[name], tmp_path)
    ticker = "import time\nfor i in range(400):\n    print(i, flush=True)\n    time.sleep(0.005)\n"

    async def go() -> None:
        task = c.task("forever")
        task = Task(**{**{f: getattr(task, f) for f in task.__slots__},
                       "spec": replace(task.spec, command=["python", "-c", ticker])})
        first = Collect()
        await c.driver.prepare(task, None)
        handle = await c.driver.start(task, first)
        await asyncio.sleep(0.3)
        # the old driver goes away without stopping anything (as in a daemon SIGKILL)
        loop = asyncio.get_running_loop()
        for w in list(c.driver.launcher.watches.values()):  # type: ignore[attr-defined]
            for fd in list(w.fds.values()):
                loop.remove_reader(fd)
                os.close(fd)
            loop.remove_reader(w.pidfd)
            w.fds.clear()
        second_driver = DRIVERS[name]()
        second = Collect()
        assert await second_driver.recover(handle, second)
        await second_driver.wait(handle)
        numbers = [int(x) for x in (first.text() + second.text()).split()]
        assert numbers == list(range(400))

    run(go())


@pytest.mark.parametrize("name", ["process", "venv", "sandbox", *CONTAINERS])
def test_missing_command_is_a_clear_driver_error(name: str, tmp_path: Path,
                                                 request: pytest.FixtureRequest) -> None:
    if name == "sandbox" and find_bwrap() is None:
        pytest.skip(NEEDS["sandbox"][1])
    make = _container(name, request) if name in CONTAINERS else DRIVERS[name]
    c = Case(name, make, tmp_path)

    async def go() -> None:
        task = c.task("exit0")
        task = Task(**{**{f: getattr(task, f) for f in task.__slots__},
                       "spec": replace(task.spec, command=["no-such-cmd-x"])})
        await c.driver.prepare(task, None)
        with pytest.raises(DriverError, match="command not found: no-such-cmd-x"):
            await c.driver.start(task, Collect())

    run(go())


def test_recover_refuses_a_dead_or_reused_pid(tmp_path: Path) -> None:
    from corral.drivers.base import Handle

    async def go() -> None:
        gone = Handle(driver="process", instance="x.1", pid=os.getpid(), started_at=0,
                      pid_start=1)  # our own pid with a wrong start time: a reused pid
        assert not await ProcessDriver().recover(gone, Collect())

    run(go())
