"""What rootless Podman cannot do here, decided before a container is created
(``corral.drivers.container.rootless``), and usage of a container without a cgroup of its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.drivers.container import oom, rootless
from corral.drivers.container.engine import Engine

PODMAN = Engine("podman", "/usr/bin/podman")
DOCKER = Engine("docker", "/usr/bin/docker")


def test_cgroup_v2_only_when_the_unified_hierarchy_is_mounted_at_sys_fs_cgroup(
        tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n")
    assert rootless.cgroup_v2(str(mounts))
    # hybrid: a tmpfs of v1 controllers, v2 only under unified/ (Podman counts it as v1)
    mounts.write_text("tmpfs /sys/fs/cgroup tmpfs ro 0 0\n"
                      "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
                      "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n")
    assert not rootless.cgroup_v2(str(mounts))
    assert not rootless.cgroup_v2(str(tmp_path / "missing"))


def test_limits_are_refused_on_v1_with_the_fix_and_pass_on_v2() -> None:
    named = rootless.limits_named(None, 64 << 20, None, 10)
    assert named == ["memory", "pids"]
    problem, fix = rootless.limits_problem(named, v2=False) or ("", "")
    assert problem == ("rootless Podman on cgroup v1 cannot apply resource limits (memory, "
                       "pids); the agent would run unlimited")
    assert fix.startswith("run corral as root, or use a cgroup v2 host")
    assert rootless.limits_problem(named, v2=True) is None
    assert rootless.limits_problem([], v2=False) is None


def test_a_network_needs_the_tun_device_none_and_host_do_not(tmp_path: Path) -> None:
    problem, fix = rootless.network_problem("bridge", tun=False) or ("", "")
    assert problem.startswith("rootless Podman cannot give containers a network here: "
                              f"/dev/net/tun is not open to uid {os.geteuid()}")
    assert fix.startswith("chmod 0666 /dev/net/tun")
    assert rootless.network_problem("bridge", tun=True) is None
    for mode in ("none", "host"):
        assert rootless.network_problem(mode, tun=False) is None
    assert not rootless.tun_usable(str(tmp_path / "no-such-device"))


def test_only_a_local_podman_run_by_a_user_is_rootless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONTAINER_HOST", raising=False)
    monkeypatch.delenv("CONTAINER_CONNECTION", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert not rootless.podman_rootless(PODMAN)
    assert rootless.refusal(PODMAN, network="bridge", limits=["memory"]) is None
    assert rootless.doctor_rows(PODMAN) == []
    monkeypatch.setattr(os, "geteuid", lambda: 1001)
    assert rootless.podman_rootless(PODMAN)
    assert not rootless.podman_rootless(DOCKER)
    monkeypatch.setattr(rootless, "cgroup_v2", lambda: False)
    refused = rootless.refusal(PODMAN, network="none", limits=["memory"])
    assert refused is not None and "cgroup v1" in refused[0]
    rows = rootless.doctor_rows(PODMAN)
    assert rows[0] == ("podman", True, "rootless (uid 1001): containers in this user's "
                       "storage", "")
    assert rows[1][1] is False and "resource limits cannot be enforced" in rows[1][2]
    monkeypatch.setenv("CONTAINER_HOST", "ssh://elsewhere/run/podman/podman.sock")
    assert not rootless.podman_rootless(PODMAN)  # another host's Podman: it knows


def test_a_process_sharing_our_cgroup_is_counted_by_its_tree_not_the_group() -> None:
    """A rootless container on v1 stays in its starter's cgroup: reading that group would
    report the daemon's (and more) as the agent's; watching it, others' OOM kills."""
    me = os.getpid()
    assert not oom.own_group(me)
    assert oom.memory_dir(me) is None  # never watched
    got = oom.usage(me)
    tree = oom.tree_usage(me)
    assert got is not None and tree is not None
    assert got.processes == tree.processes >= 1
    assert 0 < got.rss_bytes < 4 << 30  # this process (and children), not a whole group
    assert oom.tree_usage(2 ** 22 + 1) is None  # no such pid


def test_a_runtime_dir_of_another_user_is_refused_a_missing_one_is_not(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1001)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # root's here
    problem, fix = rootless.runtime_dir_problem() or ("", "")
    assert problem == (f"XDG_RUNTIME_DIR={tmp_path} is not this user's (uid 1001): rootless "
                       "Podman refuses it")
    assert fix.startswith("unset XDG_RUNTIME_DIR (Podman then uses /tmp/podman-run-1001)")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    assert rootless.runtime_dir_problem() is None
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert rootless.runtime_dir_problem() is None
