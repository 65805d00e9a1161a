"""Sandboxed agents through the real CLI and daemon: what they can see and do, their limits,
and nothing left behind. (tests/contract/test_bwrap_view.py proves each mount rule alone.)"""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from corral.drivers.host.bwrap import find_bwrap
from corral.limits.limiter import Limiter
from tests.e2e.conftest import Project, pids_with_marker

pytestmark = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap (bwrap) is not "
                                "installed: apt-get install bubblewrap (scripts/install.sh "
                                "--test does)")

PEEK = """\
#!/bin/bash
# what a sandboxed agent can do: each line says yes or no
t() { if eval "$2" >/dev/null 2>&1; then echo "$1 yes"; else echo "$1 no"; fi; }
t read-other "cat ../other/token"
t read-home "ls -A $REAL_HOME | grep -q ."
t read-state "cat ../.corral/state.db"
t write-workdir "echo x > here.txt"
t write-data "echo x > $CORRAL_STATE_DIR/kept.txt"
t write-project "echo x > ../evil.txt"
t write-etc "echo x > /etc/evil.txt"
t net "(exec 3<>/dev/tcp/127.0.0.1/$PORT)"
echo "pids $(ls /proc | grep -c '^[0-9]')"
"""


def _listener() -> tuple[socket.socket, int]:
    """A TCP listener on the host's loopback, and its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener, int(listener.getsockname()[1])


def test_a_sandboxed_agent_sees_only_what_it_was_given(project: Project) -> None:
    other = project.root / "other"
    other.mkdir()
    (other / "token").write_text("other-agent-secret\n")
    mine = project.root / "mine"
    mine.mkdir()
    (mine / "peek.sh").write_text(PEEK)
    listener, port = _listener()
    project.write(f"""
        name: boxed
        agents:
          peek:
            class: compute
            isolation: sandbox
            workdir: mine
            command: /bin/bash peek.sh
            env: {{PORT: "{port}", REAL_HOME: "{os.path.expanduser('~')}"}}
          other:
            command: sleep 300
            workdir: other
    """)
    try:
        project.corral("up", "-d")
        rows = project.wait_for(lambda r: r["peek.1"]["state"] == "exited", what="peek")
    finally:
        listener.close()
    assert rows["peek.1"]["exit_code"] == 0, project.records("peek")
    said = dict(r["message"].split(" ", 1) for r in project.records("peek"))
    assert said == {"read-other": "no", "read-home": "no", "read-state": "no",
                    "write-workdir": "yes", "write-data": "yes", "write-project": "no",
                    "write-etc": "no", "net": "no", "pids": said["pids"]}, said
    assert int(said["pids"]) <= 5
    assert (mine / "here.txt").exists() and not (project.root / "evil.txt").exists()
    assert (project.state_dir / "data" / "peek" / "kept.txt").exists()
    project.corral("down")
    assert pids_with_marker(project.root) == []


@pytest.mark.skipif(not Limiter().writable(), reason="no writable cgroup on this host")
def test_limits_hold_inside_the_sandbox(project: Project) -> None:
    project.write("""
        name: boxlimits
        agents:
          hog:
            class: compute
            isolation: sandbox
            command: ["/bin/sh", "-c", "x=$(head -c 300000000 /dev/zero | tr '\\\\0' x); echo no"]
            resources: {memory: 48M}
            restart: "no"
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: r["hog.1"]["state"] in ("exited", "fatal"), what="hog")
    assert rows["hog.1"]["oom_killed"] is True, rows["hog.1"]
    assert "out of memory" in rows["hog.1"]["reason"]


def test_sandbox_network_host_reaches_loopback(project: Project, tmp_path: Path) -> None:
    listener, port = _listener()
    project.write(f"""
        name: boxnet
        agents:
          fetch:
            class: compute
            isolation: sandbox
            network: host
            command: ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/{port} && echo reached"]
    """)
    try:
        project.corral("up", "-d")
        rows = project.wait_for(lambda r: r["fetch.1"]["state"] == "exited", what="fetch")
    finally:
        listener.close()
    assert rows["fetch.1"]["exit_code"] == 0
    assert [r["message"] for r in project.records("fetch")] == ["reached"]


def test_probes_and_corral_exec_run_inside_the_sandbox(project: Project) -> None:
    """A file in the sandbox's private /tmp makes it healthy: the exec probe ran in the
    sandbox, not on the host, and a dependent on `healthy` starts after it. `corral exec` goes
    in the same way: the agent's view, its PID namespace, no capabilities, its environment."""
    marker = f"/tmp/corral-boxready-{os.getpid()}"
    assert not os.path.exists(marker)
    project.write(f"""
        name: boxprobe
        agents:
          svc:
            class: service
            isolation: sandbox
            command: ["sh", "-c", "sleep 1; touch {marker}; sleep 300"]
            env: {{GREETING: from-the-manifest}}
            readiness: {{exec: "test -f {marker}", period: 0.3s}}
          after:
            class: compute
            command: ["true"]
            depends_on:
              svc: {{condition: healthy}}
    """)
    try:
        project.corral("up", "-d")
        rows = project.wait_for(lambda r: r["after.1"]["state"] == "exited", timeout=60,
                                what="the dependent to start once the probe passed inside")
        assert rows["svc.1"]["health"] == "healthy"
        assert not os.path.exists(marker), "the probe's file is the sandbox's, not the host's"
        got = project.corral("exec", "svc", "--", "sh", "-c",
                             f"test -f {marker} && echo seen; echo $GREETING; pwd; "
                             "grep CapEff /proc/self/status; ls /proc | grep -c '^[0-9]'; "
                             f"ls -A {os.path.expanduser('~')} | wc -l")
        seen, greeting, cwd, caps, pids, home = got.stdout.split("\n")[:6]
        assert (seen, greeting, cwd) == ("seen", "from-the-manifest", str(project.root))
        assert caps.split() == ["CapEff:", "0000000000000000"]
        assert int(pids) <= 6 and home == "0", got.stdout
        project.corral("stop", "svc")
        refused = project.corral("exec", "svc", "--", "true", check=False)
        assert refused.returncode != 0
        assert refused.stderr.strip().splitlines() == [
            "corral: agents.svc: no running sandbox to run the command in: "
            "start it first: corral up -d svc"], refused.stderr
    finally:
        project.corral("down", check=False)


def test_a_shared_loopback_joins_only_the_agents_that_name_it(project: Project) -> None:
    """`network: loopback:NAME`: the agents naming it reach each other on 127.0.0.1; an agent
    with `network: none` and the host itself do not; the loopback outlives a member's
    restart."""
    listener, port = _listener()
    listener.close()  # a port free on the host's loopback: the server takes it in the group's
    knock = ("for i in $(seq {n}); do (exec 3<>/dev/tcp/127.0.0.1/" + str(port) + ") "
             "2>/dev/null && {{ echo reached; exit 0; }}; sleep 0.1; done; echo unreachable")
    project.write(f"""
        name: boxloop
        agents:
          server:
            isolation: sandbox
            network: loopback:backend
            command: ["{sys.executable}", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
          client:
            class: compute
            isolation: sandbox
            network: loopback:backend
            command: ["/bin/bash", "-c", "{knock.format(n=100)}"]
          outsider:
            class: compute
            isolation: sandbox
            network: none
            command: ["/bin/bash", "-c", "{knock.format(n=20)}"]
    """)
    try:
        project.corral("up", "-d")
        rows = project.wait_for(lambda r: r["client.1"]["state"] == "exited"
                                and r["outsider.1"]["state"] == "exited", timeout=60,
                                what="both knocks to end")
        assert [r["message"] for r in project.records("client")] == ["reached"]
        assert [r["message"] for r in project.records("outsider")] == ["unreachable"]
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))  # nothing listens on the host's loopback
        before = rows["server.1"]["pid"]
        project.corral("restart", "server")
        project.wait_for(lambda r: r["server.1"]["state"] == "running"
                         and r["server.1"]["pid"] != before, what="the server back")
        project.corral("restart", "client")
        project.wait_for(lambda r: r["client.1"]["state"] == "exited"
                         and len(project.records("client")) == 2, timeout=60,
                         what="the second knock")
        assert [r["message"] for r in project.records("client")] == ["reached", "reached"]
        # a new daemon holds no namespace: it finds the group again in the running server
        daemon, server = project.daemon_pid(), project.ps()["server.1"]["pid"]
        assert daemon is not None
        os.kill(daemon, signal.SIGKILL)
        project.corral("up", "-d")
        assert project.ps()["server.1"]["pid"] == server  # re-adopted, still in the group
        project.corral("restart", "client")
        project.wait_for(lambda r: r["client.1"]["state"] == "exited"
                         and len(project.records("client")) == 3, timeout=60,
                         what="the knock after a daemon restart")
        assert [r["message"] for r in project.records("client")][-1] == "reached"
    finally:
        project.corral("down", check=False)
    assert pids_with_marker(project.root) == []
