"""Sandboxed agents through the real CLI and daemon: what they can see and do, their limits,
and nothing left behind. (tests/contract/test_bwrap_view.py proves each mount rule alone.)"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from corral.drivers.bwrap import find_bwrap
from corral.limits import Limiter
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
