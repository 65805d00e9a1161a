"""corral run by a non-root user on rootless Podman ("daemonless, rootless where the host
allows it"): the real CLI and daemon as that user, its containers in its own storage, and
what such a host cannot do (limits on cgroup v1, networks without ``/dev/net/tun``) refused
in one line with the fix while the rest of the fleet runs. See ``tests/support/rootless.py``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from corral.drivers.container import rootless as facts
from tests.e2e.conftest import Project, running
from tests.support.rootless import BASE, PYTHON, User

pytestmark = pytest.mark.e2e


class UserProject(Project):
    """A project dir the user owns, its CLI run as the user."""

    def __init__(self, root: Path, user: User) -> None:
        super().__init__(root)
        self.user = user

    def write(self, text: str) -> None:
        super().write(text)
        os.chown(self.manifest, self.user.uid, self.user.gid)

    def corral(self, *args: str, check: bool = True, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        got = self.user.run([PYTHON, "-m", "corral.cli.main", "-f", str(self.manifest), *args],
                            cwd=str(self.root), timeout=timeout, env=env)
        proc = subprocess.CompletedProcess(got.args, got.returncode,
                                           got.stdout.decode(errors="replace"),
                                           got.stderr.decode(errors="replace"))
        if check and proc.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} as {self.user.name} exited "
                                 f"{proc.returncode}:\n{proc.stdout}\n{proc.stderr}\n"
                                 f"{self.daemon_log()}")
        return proc

    def containers(self, project: str, *, as_root: bool = False) -> list[str]:
        argv = ["ps", "-a", "--format", "{{.Names}}", "--filter",
                f"label=corral.project={project}"]
        got = subprocess.run(["podman", *argv], capture_output=True) if as_root \
            else self.user.podman(*argv)
        assert got.returncode == 0, got.stderr
        return got.stdout.decode().split()


@pytest.fixture
def uproject(rootless_user: User) -> Iterator[UserProject]:
    root = rootless_user.project_dir()
    p = UserProject(root, rootless_user)
    try:
        yield p
    finally:
        pid = p.daemon_pid()
        if pid is not None and running(pid):
            p.corral("down", check=False, timeout=60)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if p.manifest.exists():
            name = str(yaml.safe_load(p.manifest.read_text())["name"])
            for cname in p.containers(name):
                rootless_user.podman("rm", "-f", "-t", "0", cname)
            rootless_user.podman("network", "rm", "-f", f"corral-{name}")
        shutil.rmtree(root, ignore_errors=True)


def _services_of(daemon: int) -> list[int]:
    """The Podman services the daemon started (its children running ``system service``)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
            cmd = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(b")", 1)[1].split()[1]) == daemon and b"system\0service" in cmd:
            found.append(int(name))
    return found


def _descendants(pids: list[int]) -> set[int]:
    """``pids`` and every process under them (a rootless service re-execs itself in the
    user namespace: the child is the one serving)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{name}/stat").read_bytes()
                children.setdefault(int(stat.rsplit(b")", 1)[1].split()[1]), []).append(
                    int(name))
    found, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def _gone(pids: set[int], timeout: float = 10) -> set[int]:
    """Those of ``pids`` still running after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while {p for p in pids if running(p)} and time.monotonic() < deadline:
        time.sleep(0.05)
    return {p for p in pids if running(p)}


def test_a_user_runs_a_container_fleet_on_rootless_podman(uproject: UserProject,
                                                          rootless_user: User) -> None:
    """up, ps, the container the user's own (not root's), logs, stop and start --wait, a
    daemon SIGKILL (its service goes with it; the agent is re-adopted), down leaving none
    of the user's corral or Podman processes behind; all without XDG_RUNTIME_DIR."""
    user = rootless_user
    uproject.write(f"""
        name: rltest
        agents:
          talker:
            isolation: container
            network: none
            command: [sh, -c, "echo hello-rootless; while true; do echo tick; sleep 0.2; done"]
            container: {{engine: podman, image: "{BASE}"}}
    """)
    baseline = user.live_pids()
    up = uproject.corral("up", "-d")
    assert "talker.1: running pid " in up.stdout, up.stdout
    rows = uproject.wait_for(lambda r: r.get("talker.1", {}).get("state") == "running",
                             what="talker running")
    daemon = uproject.daemon_pid()
    assert daemon is not None and os.stat(f"/proc/{daemon}").st_uid == user.uid
    assert uproject.containers("rltest") == ["corral-rltest-talker.1"]  # the user's
    assert uproject.containers("rltest", as_root=True) == []  # not root's
    agent_pid = rows["talker.1"]["pid"]
    assert os.stat(f"/proc/{agent_pid}").st_uid == user.uid  # root inside, the user outside
    services = _services_of(daemon)
    assert len(services) == 1, "the daemon serves the API itself: one rootless service"
    started = _descendants([daemon]) - {daemon}

    deadline = time.monotonic() + 20
    while "hello-rootless" not in uproject.corral("logs", "talker").stdout:
        assert time.monotonic() < deadline, uproject.daemon_log()
        time.sleep(0.2)
    lines = [r["message"] for r in uproject.records("talker") if r.get("stream") == "stdout"]
    assert lines[0] == "hello-rootless" and "tick" in lines

    uproject.corral("stop", "talker")
    assert uproject.ps()["talker.1"]["state"] in ("stopped", "exited")
    assert uproject.containers("rltest") == []
    out = uproject.corral("start", "--wait", "talker").stdout
    assert out.startswith("talker.1: running pid "), out
    assert _services_of(daemon) == services  # reused
    before = uproject.ps()["talker.1"]

    os.kill(daemon, signal.SIGKILL)
    assert _gone(_descendants(services)) == set(), "the Podman service outlived the daemon"
    assert uproject.containers("rltest") == ["corral-rltest-talker.1"]  # the agent did not
    uproject.corral("up", "-d")
    after = uproject.ps()["talker.1"]
    assert after["state"] == "running"
    assert after["started_at"] == pytest.approx(before["started_at"], abs=0.01)  # adopted
    assert uproject.containers("rltest") == ["corral-rltest-talker.1"]
    daemon = uproject.daemon_pid()
    assert daemon is not None
    mine = _descendants([daemon])

    down = uproject.corral("down")
    assert "stopped 1 instance" in down.stdout, down.stdout
    assert uproject.containers("rltest") == []
    assert _gone(mine | started) == set(), "corral's daemon, service or conmons lived on"
    left = {p for p in user.live_pids() - baseline if running(p)}
    assert left == set(), [Path(f"/proc/{p}/cmdline").read_bytes() for p in left]
    assert "Traceback" not in uproject.daemon_log()


def test_limits_and_networks_it_cannot_give_are_one_line_and_the_rest_runs(
        uproject: UserProject, rootless_user: User) -> None:
    """On cgroup v1 rootless Podman would drop the limits silently; without /dev/net/tun
    its network fails obscurely (and wedges later starts); with another user's
    XDG_RUNTIME_DIR it refuses everything. Each agent is fatal at once with the reason and
    fix; the others keep running; doctor says the same."""
    v2 = facts.cgroup_v2()
    tun = rootless_user.run(["sh", "-c", f"exec 3<>{facts.TUN}"]).returncode == 0
    if v2 and tun:
        pytest.skip("cgroup v2 and /dev/net/tun open to the user: rootless Podman can "
                    "apply limits and networks here, nothing is refused")
    uproject.write(f"""
        name: rlrefuse
        agents:
          capped:
            isolation: container
            network: none
            resources: {{memory: 64M}}
            command: [sleep, "300"]
            container: {{engine: podman, image: "{BASE}"}}
          netted:
            isolation: container
            command: [sleep, "300"]
            container: {{engine: podman, image: "{BASE}"}}
          plain:
            command: [sleep, "300"]
    """)
    up = uproject.corral("up", "-d", check=False, timeout=60)
    assert up.returncode == 1, up.stdout + up.stderr
    assert "Traceback" not in up.stdout + up.stderr
    rows = uproject.wait_for(lambda r: r["plain.1"]["state"] == "running", what="plain runs")
    expect = {"capped": None if v2 else (
                  "rootless Podman on cgroup v1 cannot apply resource limits (memory)",
                  "run corral as root, or use a cgroup v2 host"),
              "netted": None if tun else (
                  f"rootless Podman cannot give containers a network here: {facts.TUN} is "
                  f"not open to uid {rootless_user.uid}", f"chmod 0666 {facts.TUN}")}
    for agent, words in expect.items():
        row = rows[f"{agent}.1"]
        if words is None:
            continue
        assert row["state"] == "fatal", row
        assert row["restarts"] == 0
        reason = row["reason"]
        assert "\n" not in reason and reason.startswith(f"agents.{agent}: {words[0]}"), reason
        assert words[1] in reason, reason
        assert f"{agent}.1: fatal ({reason})" in up.stdout, up.stdout
    # nothing was created for those refused
    assert sorted(uproject.containers("rlrefuse")) == [
        f"corral-rlrefuse-{agent}.1" for agent, words in sorted(expect.items()) if words is None]
    assert "Traceback" not in uproject.daemon_log()
    uproject.corral("down")

    # `su` without `-` keeps root's XDG_RUNTIME_DIR: every Podman command would fail
    up = uproject.corral("up", "-d", check=False, timeout=60, env={"XDG_RUNTIME_DIR": "/tmp"})
    assert up.returncode == 1, up.stdout + up.stderr
    rows = uproject.wait_for(lambda r: r["plain.1"]["state"] == "running", what="plain runs")
    for agent in ("capped", "netted"):
        assert rows[f"{agent}.1"]["state"] == "fatal"
        assert rows[f"{agent}.1"]["reason"] == (
            f"agents.{agent}: XDG_RUNTIME_DIR=/tmp is not this user's (uid {rootless_user.uid})"
            ": rootless Podman refuses it: unset XDG_RUNTIME_DIR (Podman then uses "
            f"/tmp/podman-run-{rootless_user.uid}) or log in as the user (su - USER)")
    uproject.corral("down")

    doctor = uproject.corral("doctor", check=False, timeout=120).stdout
    assert f"ok podman     rootless (uid {rootless_user.uid})" in doctor, doctor
    if not v2:
        assert "-- podman     rootless on cgroup v1: resource limits cannot be enforced" \
            in doctor, doctor
    if not tun:
        assert "-- podman     rootless Podman cannot give containers a network here" \
            in doctor, doctor


def test_agents_reach_each_other_on_a_rootless_project_network(uproject: UserProject,
                                                              rootless_user: User) -> None:
    if rootless_user.run(["sh", "-c", f"exec 3<>{facts.TUN}"]).returncode != 0:
        mode = oct(os.stat(facts.TUN).st_mode & 0o777) if os.path.exists(facts.TUN) else None
        pytest.skip(f"{facts.TUN} is not open to {rootless_user.name} (mode {mode}): rootless "
                    "Podman has no network here (slirp4netns needs the device; chmod 0666 "
                    f"{facts.TUN} allows it); the refusal is tested instead")
    uproject.write(f"""
        name: rlnet
        agents:
          srv:
            isolation: container
            command: [sleep, "300"]
            container: {{engine: podman, image: "{BASE}"}}
          cli:
            class: compute
            isolation: container
            command: [sh, -c, "sleep 1; getent hosts srv"]
            container: {{engine: podman, image: "{BASE}"}}
    """)
    uproject.corral("up", "-d")
    deadline = time.monotonic() + 60
    lines: list[str] = []
    # by name, as in compose ("10.89.1.10  srv.dns.podman")
    while not any(w.split(".")[0] == "srv" for line in lines for w in line.split()[1:]):
        assert time.monotonic() < deadline, (lines, uproject.ps())
        time.sleep(0.2)
        lines = [r["message"] for r in uproject.records("cli") if r.get("stream") == "stdout"]
    down = uproject.corral("down")
    assert "removed podman network corral-rlnet" in down.stdout, down.stdout
