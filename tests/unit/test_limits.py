"""limits.limiter without touching the host: layouts from text, groups on fake cgroupfs trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from corral.errors import CorralError
from corral.limits import rlimit, v1, v2
from corral.limits.detect import detect_from, parse_proc_cgroup
from corral.limits.group import Group
from corral.limits.limiter import Layout, Limiter, Placement
from corral.manifest import validation
from corral.manifest.spec import Resources


def _resources(raw: dict[str, object]) -> Resources:
    """A resources block as the CLI validates it (the spec's record, through pydantic)."""
    return TypeAdapter(Resources).validate_python(raw)

HYBRID_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_SELF = """\
9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
"""
V2_MOUNTS = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_COMOUNTED = ("30 23 0:27 / /cg/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
                "31 23 0:28 /nested /cg/memory rw - cgroup cgroup rw,memory\n")


def test_hybrid_layout_nests_under_each_hierarchys_own_group() -> None:
    lay = detect_from(HYBRID_MOUNTS, HYBRID_SELF, read_controllers=False)
    assert lay.kind == "hybrid"
    assert lay.v1["memory"] == "/sys/fs/cgroup/memory/process_api/abc"
    assert lay.v1["cpu"] == "/sys/fs/cgroup/cpu" and lay.v1["freezer"] == "/sys/fs/cgroup/freezer"
    assert lay.unified == "/sys/fs/cgroup/unified"


def test_v2_layout_and_the_supervisor_leaf(tmp_path: Path) -> None:
    lay = detect_from(V2_MOUNTS, "0::/user.slice/corral.scope/corral-supervisor\n",
                      read_controllers=False)
    assert lay.unified == "/sys/fs/cgroup/user.slice/corral.scope"  # agents beside the leaf
    assert lay.kind == "none"  # no controllers read: nothing to limit with
    mounts = f"29 23 0:26 / {tmp_path} rw - cgroup2 cgroup2 rw\n"
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "cgroup.controllers").write_text("cpu memory pids\n")
    lay = detect_from(mounts, "0::/app\n")
    assert lay.kind == "v2" and lay.v2_controllers == {"cpu", "memory", "pids"}


def test_v1_comounted_controllers_and_mount_roots() -> None:
    lay = detect_from(V1_COMOUNTED, "3:cpu,cpuacct:/a\n2:memory:/nested/b\n",
                      read_controllers=False)
    assert lay.kind == "v1"
    assert lay.v1 == {"cpu": "/cg/cpu,cpuacct/a", "cpuacct": "/cg/cpu,cpuacct/a",
                      "memory": "/cg/memory/b"}
    assert detect_from("", "", read_controllers=False).kind == "none"
    assert parse_proc_cgroup("garbage\n0::/x\n") == {"": "/x"}


def test_limit_files_for_both_versions() -> None:
    assert v1.limit_files(0.5, 256 << 20, 128 << 20, 64) == [
        ("cpu", "cpu.cfs_period_us", "100000"), ("cpu", "cpu.cfs_quota_us", "50000"),
        ("memory", "memory.limit_in_bytes", str(256 << 20)),
        ("memory", "memory.soft_limit_in_bytes", str(128 << 20)), ("pids", "pids.max", "64")]
    assert v2.limit_files(1.5, 1 << 30, None, 900 << 20, 10) == [
        ("cpu", "cpu.max", "150000 100000"), ("memory", "memory.max", str(1 << 30)),
        ("memory", "memory.high", str(900 << 20)), ("pids", "pids.max", "10")]


def _fake_v1(root: Path, with_unified: bool = False) -> Layout:
    dirs = {}
    for c in ("memory", "cpu", "cpuacct", "pids", "freezer"):
        (root / c).mkdir(parents=True)
        dirs[c] = str(root / c)
    unified = None
    if with_unified:
        (root / "unified").mkdir()
        unified = str(root / "unified")
    return Layout("hybrid" if with_unified else "v1", dirs, unified)


def _place(lim: Limiter, **res: object) -> Placement:
    return lim.place(project="demo", key="/state/run", instance="web.1",
                     res=_resources(res), where="agents.web.resources")


def test_v1_place_makes_groups_writes_limits_and_the_join_wrapper(tmp_path: Path) -> None:
    lim = Limiter(_fake_v1(tmp_path))
    p = _place(lim, cpus=0.25, memory="64M", pids=32)
    assert p.group is not None and p.group.version == "v1"
    mem = Path(p.group.dirs["memory"])
    assert mem.parent.name.startswith("corral-demo-") and mem.name == "web.1"
    assert (mem / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (Path(p.group.dirs["cpu"]) / "cpu.cfs_quota_us").read_text() == "25000"
    assert (Path(p.group.dirs["pids"]) / "pids.max").read_text() == "32"
    assert "freezer" in p.group.dirs  # no cgroup2 mount: kill through the freezer
    argv = p.wrap(["python3", "-c", "pass"])
    assert argv[:2] == ["/bin/sh", "-c"] and argv[-4:] == ["corral-limits", "python3", "-c",
                                                           "pass"]
    assert argv[2].count("echo 0 >") == len(set(p.group.dirs.values()))
    assert p.data()["limits"] == "cgroup v1"
    # round trip through the handle, and removal of the instance and then the project group
    again = lim.adopt(p.data())
    assert again == p.group
    for d in p.group.dirs.values():
        for f in Path(d).iterdir():
            f.unlink()
    assert p.group.remove()
    assert not mem.exists() and not mem.parent.exists()


def test_v1_group_without_cpus_skips_the_cpu_controller_and_hybrid_kills_in_v2(
        tmp_path: Path) -> None:
    lim = Limiter(_fake_v1(tmp_path, with_unified=True))
    p = _place(lim)
    assert p.group is not None
    assert set(p.group.dirs) == {"unified"}  # no limits: one group, in cgroup2, for kill
    limited = _place(lim, memory="1G", pids=3)
    assert limited.group is not None and set(limited.group.dirs) == {"memory", "pids", "unified"}
    assert p.label == "cgroup v1 (+ cgroup2 for kill)"


def test_unenforceable_limits_are_one_clear_line_each(tmp_path: Path) -> None:
    lim = Limiter(_fake_v1(tmp_path))
    with pytest.raises(CorralError, match=r"agents\.web\.resources\.memory_high: cgroup v1 "
                                          r"\(this host\) has no memory\.high: remove it"):
        _place(lim, memory_high="1G")
    no_pids = Layout("v1", {"memory": str(tmp_path / "memory")})
    with pytest.raises(CorralError, match=r"resources\.pids: this host has no pids cgroup "
                                          r"controller: remove the limit"):
        _place(Limiter(no_pids), pids=5)


def test_v2_place_enables_controllers_and_writes_limits(tmp_path: Path) -> None:
    (tmp_path / "cgroup.subtree_control").write_text("")
    lim = Limiter(Layout("v2", unified=str(tmp_path),
                         v2_controllers=frozenset({"cpu", "memory", "pids"})))
    p = _place(lim, cpus=2, memory="1G", memory_reservation="512M", memory_high="900M", pids=7)
    assert p.group is not None and p.group.version == "v2"
    g = Path(p.group.dirs["unified"])
    assert (g / "cpu.max").read_text() == "200000 100000"
    assert (g / "memory.max").read_text() == str(1 << 30)
    assert (g / "memory.low").read_text() == str(512 << 20)
    assert (g / "memory.high").read_text() == str(900 << 20)
    assert (g / "pids.max").read_text() == "7"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert p.label == "cgroup v2"
    (g / "memory.events").write_text("low 0\nhigh 3\nmax 9\noom 1\noom_kill 1\n")
    (g / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 1\n")
    (g / "memory.current").write_text("4096\n")
    (g / "cgroup.procs").write_text("")
    assert p.group.oom_kills() == 1
    usage = p.group.usage()
    assert usage is not None and usage.cpu_seconds == 2.5 and usage.memory_bytes == 4096
    lim2 = Limiter(Layout("v2", unified=str(tmp_path), v2_controllers=frozenset({"memory"})))
    with pytest.raises(CorralError, match=r"the cpu controller is not available"):
        _place(lim2, cpus=1)


def test_v1_oom_count_is_relative_to_the_groups_start(tmp_path: Path) -> None:
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 4\n")
    g = Group("v1", {"memory": str(tmp_path)}, oom_base=3)
    assert g.oom_kills() == 1
    assert Group.from_json(g.to_json()) == g
    assert Group.from_json("{bad") is None


def test_rlimit_fallback_says_what_it_cannot_do() -> None:
    lim = Limiter(Layout("none"))
    p = _place(lim, memory="64M", pids=10)
    assert p.group is None and p.label == rlimit.LABEL == "rlimit (no writable cgroup)"
    assert p.shell_lines == ["ulimit -v 65536", "ulimit -p 10"]
    assert p.data() == {"limits": "rlimit (no writable cgroup)"}
    with pytest.raises(CorralError, match=r"resources\.cpus: .*RLIMIT_CPU is a total of "
                                          r"seconds\).*remove it"):
        _place(lim, cpus=0.5)
    plain = _place(lim)
    assert plain.shell_lines == [] and plain.wrap(["x", "1"]) == ["x", "1"]


def test_resources_model_and_malformed_sizes() -> None:
    spec = validation.agent({"command": ["x"], "resources": {
        "cpus": 0.5, "memory": "256M", "memory_reservation": "128MiB", "memory_high": "200MB",
        "pids": 128}})
    assert spec.resources.memory == 256 << 20 and spec.resources.memory_reservation == 128 << 20
    with pytest.raises(ValidationError, match=r"'12XB' is not a size: write e\.g\. '512K'"):
        validation.agent({"command": ["x"], "resources": {"memory": "12XB"}})
    with pytest.raises(ValidationError, match="memory_limit"):
        validation.agent({"command": ["x"], "resources": {"memory_limit": "1G"}})


def test_detect_on_this_host_does_not_fail() -> None:
    lay = Limiter().layout
    assert lay.kind in ("v2", "hybrid", "v1", "none")
    if lay.kind != "none":
        assert all(os.path.isabs(d) for d in lay.v1.values())


def test_ps_and_doctor_say_when_only_rlimits_hold() -> None:
    from corral.cli.render import table

    row = {"name": "a.1", "state": "running", "pid": 7, "uptime": 3.0, "restarts": 0,
           "health": "none", "exit_code": None, "exit_signal": None, "oom_killed": False,
           "reason": ""}
    assert "limits:" not in table([{**row, "limits": "cgroup v1"}], color=False)
    text = table([{**row, "limits": "rlimit (no writable cgroup)"}], color=False)
    assert text.splitlines()[-1].startswith("limits: rlimit (no writable cgroup): ")
    assert "OOM" in table([{**row, "oom_killed": True, "exit_signal": 9}], color=False)


def test_doctor_reports_the_limits_back_end(monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.advice import doctor

    monkeypatch.setattr(doctor, "Limiter", lambda: Limiter(Layout("none")))
    name, ok, detail, fix = doctor._limits()
    assert (name, ok) == ("limits", False)
    assert detail.startswith("rlimit (no writable cgroup): ") and "no CPU rate" in detail
    assert fix


def test_soft_limits_above_the_hard_one_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"memory_high \(2147483648 bytes\) is above "
                                              r"memory \(1073741824 bytes\): lower memory_high"):
        _resources({"memory": "1G", "memory_high": "2G"})
    assert _resources({"memory": "1G", "memory_reservation": "1G"}).memory


def test_v2_moves_the_supervisor_into_a_leaf_when_its_group_holds_processes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from corral.limits import files

    real_write = files.write
    refused: list[str] = []

    def write(path: str, value: str) -> None:
        # the kernel refuses controllers for children while the group itself holds processes
        if path.endswith("cgroup.subtree_control") and not refused:
            refused.append(path)
            raise OSError(errno.EBUSY, "Device or resource busy")
        real_write(path, value)

    monkeypatch.setattr(files, "write", write)
    (tmp_path / "cgroup.subtree_control").write_text("")
    (tmp_path / "cgroup.procs").write_text("")  # emptied by the move below
    v2.enable(str(tmp_path), {"memory"})
    assert (tmp_path / "corral-supervisor" / "cgroup.procs").read_text() == str(os.getpid())
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory"
    # on the next start the leaf is recognised: agents still nest beside it
    lay = detect_from(f"1 1 0:1 / {tmp_path} rw - cgroup2 cgroup2 rw\n",
                      "0::/corral-supervisor\n", read_controllers=False)
    assert lay.unified == str(tmp_path)
    refused.clear()
    (tmp_path / "cgroup.procs").write_text("4242\n")  # someone else's process stays there
    (tmp_path / "cgroup.subtree_control").write_text("")
    with pytest.raises(CorralError, match=r"holds other processes.*Delegate=yes"):
        v2.enable(str(tmp_path), {"pids"})
