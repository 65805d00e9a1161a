"""Limits and group kill with real processes in real cgroups (skipped where none is writable).

Every layout this host offers is exercised: v1 limits, kill through the cgroup2 mount
(hybrid), kill through the v1 freezer (pure v1), and a pure-v2 group for the kill path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.drivers.base import Handle, Task
from corral.drivers.process import ProcessDriver
from corral.drivers.venv import VenvDriver
from corral.errors import DriverError
from corral.limits import files as cgfiles
from corral.limits.limiter import Layout, Limiter
from corral.manifest import validation

PY = sys.executable
HOST = Limiter()
CGROUPS = HOST.writable()
needs_cgroup = pytest.mark.skipif(not CGROUPS, reason="no writable cgroup on this host "
                                  f"(layout: {HOST.layout.kind})")
needs_v1 = pytest.mark.skipif(not CGROUPS or HOST.layout.kind not in ("v1", "hybrid"),
                              reason=f"cgroup v1 limits need a v1 host; this is "
                              f"{HOST.layout.kind}")
needs_v2 = pytest.mark.skipif(not CGROUPS or HOST.layout.kind != "v2",
                              reason="cgroup v2 limits need controllers in a cgroup2 hierarchy; "
                              f"this host is {HOST.layout.kind} (v2 has no controllers here)")
needs_unified = pytest.mark.skipif(
    not CGROUPS or HOST.layout.unified is None
    or not os.access(HOST.layout.unified, os.W_OK), reason="no writable cgroup2 hierarchy")


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def feed(self, stream: str, data: bytes) -> None:
        self.data += data

    def eof(self, stream: str) -> None:
        pass


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def task(tmp: Path, script: str, *, resources: dict[str, Any] | None = None,
         instance: str = "a.1", isolation: str = "process") -> Task:
    raw: dict[str, Any] = {"command": ["python", "-c", textwrap.dedent(script)],
                           "isolation": isolation, "resources": resources or {}}
    if isolation == "venv":
        raw["venv"] = {"packages": []}
    return Task(project="lim", agent="a", instance=instance, index=1,
                spec=validation.agent(raw), workdir=str(tmp),
                run_dir=str(tmp / "run" / instance), cache_dir=str(tmp / "cache"),
                env={"PATH": f"{Path(PY).parent}:/usr/bin:/bin", "HOME": str(tmp)})


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] != b"Z"


async def until(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


# An agent that hides every way the /proc marker scan and the process group can see:
# double fork, setsid, its own process group, and an exec with an empty environment.
DETACHER = """
    import os, sys, time
    pids = sys.argv[1] if len(sys.argv) > 1 else "pids"
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execve("/bin/sh", ["sh", "-c", f"echo $$ >> {pids}; exec sleep 300"], {})
        os._exit(0)
    if os.fork() == 0:
        os.setpgid(0, 0)
        with open(pids, "a") as f:
            print(os.getpid(), file=f)
        time.sleep(300)
    with open(pids, "a") as f:
        print(os.getpid(), file=f)
    print("ready", flush=True)
    time.sleep(300)
"""


def _detached_pids(tmp: Path) -> list[int]:
    path = tmp / "pids"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    """A failing test must not leave its detached processes running."""
    yield
    for pid in _detached_pids(tmp_path):
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- memory: OOM is reported as OOM ---------------------------------------------------------

@needs_cgroup
@pytest.mark.parametrize("isolation", ["process", "venv"])
def test_memory_limit_hit_is_an_oom_kill(isolation: str, tmp_path: Path) -> None:
    driver = ProcessDriver() if isolation == "process" else VenvDriver()

    async def go() -> None:
        t = task(tmp_path, "x = bytearray(300 * 1024 * 1024); print('survived')",
                 resources={"memory": "64M"}, isolation=isolation)
        await driver.prepare(t)
        out = Sink()
        h = await driver.start(t, out)
        result = await driver.wait(h)
        await driver.stop(h, sig=signal.SIGTERM, timeout=0)
        assert result.oom_killed and result.signal == signal.SIGKILL
        assert result.describe() == "killed: out of memory"
        assert b"survived" not in out.data

    run(go())


@needs_cgroup
def test_a_kill_from_outside_is_not_an_oom(tmp_path: Path) -> None:
    driver = ProcessDriver()

    async def go() -> None:
        h = await driver.start(task(tmp_path, "import time; time.sleep(60)",
                                    resources={"memory": "64M"}), Sink())
        await asyncio.sleep(0.2)
        assert h.pid is not None
        os.kill(h.pid, signal.SIGKILL)
        result = await driver.wait(h)
        await driver.stop(h, sig=signal.SIGTERM, timeout=0)
        assert result.signal == signal.SIGKILL and not result.oom_killed

    run(go())


@needs_v1
def test_v1_limit_files_read_back_and_stats_come_from_the_group(tmp_path: Path) -> None:
    driver = ProcessDriver()

    async def go() -> None:
        out = Sink()
        h = await driver.start(task(tmp_path, """
            import time; x = bytearray(40 * 1024 * 1024)
            for i in range(0, len(x), 4096): x[i] = 1
            print('ready', flush=True); time.sleep(60)
        """, resources={"cpus": 0.3, "memory": "128M", "memory_reservation": "64M",
                        "pids": 50}), out)
        group = driver.limiter.adopt(h.data)
        assert group is not None and h.data["limits"].startswith("cgroup v1")
        d = group.dirs
        assert cgfiles.read_int(f"{d['cpu']}/cpu.cfs_quota_us") == 30000
        assert cgfiles.read_int(f"{d['cpu']}/cpu.cfs_period_us") == 100000
        assert cgfiles.read_int(f"{d['memory']}/memory.limit_in_bytes") == 128 << 20
        assert cgfiles.read_int(f"{d['memory']}/memory.soft_limit_in_bytes") == 64 << 20
        assert cgfiles.read_int(f"{d['pids']}/pids.max") == 50
        await until(lambda: b"ready" in out.data)
        usage = await driver.stats(h)
        assert usage is not None and usage.rss_bytes >= 40 << 20 and usage.processes == 1
        await driver.stop(h, sig=signal.SIGTERM, timeout=2)
        assert not any(os.path.exists(p) for p in d.values()), "groups removed after stop"

    run(go())


@needs_cgroup
def test_cpu_quota_throttles_a_busy_loop(tmp_path: Path) -> None:
    driver = ProcessDriver()

    async def go() -> None:
        out = Sink()
        h = await driver.start(task(tmp_path, """
            import time
            end = time.monotonic() + 1.0
            while time.monotonic() < end: pass
            print(time.process_time(), flush=True)
        """, resources={"cpus": 0.2}), out)
        await driver.wait(h)
        await driver.stop(h, sig=signal.SIGTERM, timeout=0)
        used = float(out.data.decode().split()[-1])
        assert used < 0.45, f"0.2 CPU for 1 s of wall time used {used:.2f} s of CPU"

    run(go())


@needs_cgroup
def test_pids_limit_is_enforced(tmp_path: Path) -> None:
    driver = ProcessDriver()

    async def go() -> None:
        out = Sink()
        h = await driver.start(task(tmp_path, """
            import os, time
            n = 0
            for _ in range(40):
                try:
                    pid = os.fork()
                except OSError:
                    break
                if pid == 0:
                    time.sleep(30); os._exit(0)
                n += 1
            print("forked", n, flush=True)
        """, resources={"pids": 10}), out)
        await driver.wait(h)
        await driver.stop(h, sig=signal.SIGTERM, timeout=0)
        assert out.data.decode().split() == ["forked", "9"]

    run(go())


# --- no orphans: the group is killed, whatever its members did ---------------------------------

def _stop_leaves_nothing(driver: ProcessDriver, tmp: Path) -> None:
    async def go() -> None:
        out = Sink()
        h = await driver.start(task(tmp, DETACHER), out)
        await until(lambda: b"ready" in out.data and len(_detached_pids(tmp)) == 3)
        group = driver.limiter.adopt(h.data)
        assert group is not None
        members = group.members()
        assert set(_detached_pids(tmp)) <= members
        await driver.stop(h, sig=signal.SIGTERM, timeout=0.5)
        left = [p for p in _detached_pids(tmp) if alive(p)]
        assert left == [], f"left running: {left}"
        assert not any(os.path.exists(d) for d in group.dirs.values())

    run(go())


@needs_unified
def test_stop_kills_detached_and_env_scrubbed_members_through_cgroup_kill(
        tmp_path: Path) -> None:
    _stop_leaves_nothing(ProcessDriver(), tmp_path)


@needs_v1
def test_stop_kills_detached_members_through_the_v1_freezer(tmp_path: Path) -> None:
    lay = HOST.layout
    v1_only = Layout("v1", dict(lay.v1), None)  # as on a pure v1 host: no cgroup2 mount
    driver = ProcessDriver(Limiter(v1_only))
    _stop_leaves_nothing(driver, tmp_path)


@needs_unified
def test_a_pure_v2_group_kills_the_tree(tmp_path: Path) -> None:
    lay = HOST.layout
    assert lay.unified is not None
    v2_only = Layout("v2", unified=lay.unified, v2_controllers=lay.v2_controllers)
    driver = ProcessDriver(Limiter(v2_only))
    _stop_leaves_nothing(driver, tmp_path)


@needs_cgroup
def test_main_exit_then_stop_kills_what_it_left(tmp_path: Path) -> None:
    driver = ProcessDriver()

    async def go() -> None:
        h = await driver.start(task(tmp_path, """
            import os
            if os.fork() == 0:
                os.setsid(); os.execve("/bin/sleep", ["sleep", "300"], {})
            open("pids", "w").write(str(os.getpid()))
        """), Sink())
        result = await driver.wait(h)
        assert result.code == 0
        group = driver.limiter.adopt(h.data)
        assert group is not None and len(group.members()) == 1
        straggler = next(iter(group.members()))
        await driver.stop(h, sig=signal.SIGTERM, timeout=0)
        assert not alive(straggler)

    run(go())


@needs_cgroup
def test_a_new_driver_readopts_the_group_after_a_daemon_crash(tmp_path: Path) -> None:
    async def go() -> None:
        first = ProcessDriver()
        out = Sink()
        h = await first.start(task(tmp_path, DETACHER), out)
        await until(lambda: b"ready" in out.data and len(_detached_pids(tmp_path)) == 3)
        h = first.complete(h)
        stored = Handle.from_json(h.to_json())  # what the store keeps
        second = ProcessDriver()  # the restarted daemon
        assert await second.recover(stored, Sink())
        usage = await second.stats(stored)
        assert usage is not None and usage.processes == 3  # main, setsid'd sh, own pgroup
        await second.stop(stored, sig=signal.SIGTERM, timeout=0.5)
        assert [p for p in _detached_pids(tmp_path) if alive(p)] == []
        await first.wait(h)  # the test process is the parent: reap it

    run(go())


@needs_cgroup
def test_recover_of_a_dead_main_kills_what_it_left_behind(tmp_path: Path) -> None:
    async def go() -> None:
        first = ProcessDriver()
        out = Sink()
        h = await first.start(task(tmp_path, DETACHER), out)
        await until(lambda: b"ready" in out.data and len(_detached_pids(tmp_path)) == 3)
        h = first.complete(h)
        assert h.pid is not None
        os.kill(h.pid, signal.SIGKILL)  # the main process dies while the daemon is away
        await until(lambda: not alive(h.pid or 0))
        assert not await ProcessDriver().recover(Handle.from_json(h.to_json()), Sink())
        assert [p for p in _detached_pids(tmp_path) if alive(p)] == []

    run(go())


# --- where no cgroup is writable ----------------------------------------------------------------

def test_rlimit_fallback_caps_memory_and_refuses_a_cpu_rate(tmp_path: Path) -> None:
    driver = ProcessDriver(Limiter(Layout("none")))

    async def go() -> None:
        out = Sink()
        h = await driver.start(task(tmp_path, """
            try:
                x = bytearray(300 * 1024 * 1024)
                print("allocated")
            except MemoryError:
                print("MemoryError")
        """, resources={"memory": "128M"}), out)
        assert h.data["limits"] == "rlimit (no writable cgroup)" and "cgroup" not in h.data
        await driver.wait(h)
        await driver.stop(h, sig=signal.SIGTERM, timeout=0)
        assert out.data.decode().strip() == "MemoryError"
        with pytest.raises(DriverError, match=r"agents\.a\.resources\.cpus: .*rlimits cannot "
                                              r"cap a CPU rate"):
            await driver.start(task(tmp_path, "pass", resources={"cpus": 1}), Sink())

    run(go())


@needs_cgroup
def test_the_join_wrapper_keeps_argv0_and_resolves_like_the_driver(tmp_path: Path) -> None:
    driver = ProcessDriver()
    tool = tmp_path / "tool.sh"
    tool.write_text('#!/bin/sh\necho "$0 $1"; cat /proc/self/cgroup\n')
    tool.chmod(0o755)

    async def go() -> None:
        t = task(tmp_path, "")
        t = Task(**{**{f: getattr(t, f) for f in t.__slots__},
                    "spec": validation.agent({"command": ["./tool.sh", "x y"]})})
        out = Sink()
        h = await driver.start(t, out)
        assert (await driver.wait(h)).code == 0
        await driver.stop(h, sig=signal.SIGTERM, timeout=0)
        lines = out.data.decode().splitlines()
        assert lines[0] == "./tool.sh x y"
        assert any("/corral-lim-" in line and line.endswith("/a.1") for line in lines[1:])

    run(go())


def test_without_a_cgroup_stop_still_finds_detached_members_by_marker(tmp_path: Path) -> None:
    driver = ProcessDriver(Limiter(Layout("none")))

    async def go() -> None:
        out = Sink()
        h = await driver.start(task(tmp_path, """
            import os, time
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    open("pids", "a").write(f"{os.getpid()}\\n"); time.sleep(300)
                os._exit(0)
            open("pids", "a").write(f"{os.getpid()}\\n"); print("ready", flush=True)
            time.sleep(300)
        """), out)
        await until(lambda: b"ready" in out.data and len(_detached_pids(tmp_path)) == 2)
        await driver.stop(h, sig=signal.SIGTERM, timeout=0.5)
        # Each was killed; one the scan saw already exiting (its environ gone, so no longer
        # a member) may take a moment more to die on a loaded machine: SIGKILL cannot be
        # caught, so a second is plenty, and a stray left running would still fail here.
        await until(lambda: [p for p in _detached_pids(tmp_path) if alive(p)] == [], 1.0)

    run(go())


@needs_v2
def test_v2_limit_files_read_back_and_oom_from_memory_events(tmp_path: Path) -> None:
    driver = ProcessDriver()

    async def go() -> None:
        h = await driver.start(task(tmp_path, "import time; time.sleep(60)", resources={
            "cpus": 0.5, "memory": "128M", "memory_reservation": "32M", "memory_high": "96M",
            "pids": 20}), Sink())
        group = driver.limiter.adopt(h.data)
        assert group is not None and group.version == "v2"
        d = group.dirs["unified"]
        assert (cgfiles.read(f"{d}/cpu.max") or "").split() == ["50000", "100000"]
        assert cgfiles.read_int(f"{d}/memory.max") == 128 << 20
        assert cgfiles.read_int(f"{d}/memory.low") == 32 << 20
        assert cgfiles.read_int(f"{d}/memory.high") == 96 << 20
        assert cgfiles.read_int(f"{d}/pids.max") == 20
        await driver.stop(h, sig=signal.SIGTERM, timeout=1)
        hog = await driver.start(task(tmp_path, "x = bytearray(300 * 1024 * 1024)",
                                      resources={"memory": "64M"}), Sink())
        result = await driver.wait(hog)
        await driver.stop(hog, sig=signal.SIGTERM, timeout=0)
        assert result.oom_killed

    run(go())
