"""Limits through the real CLI and daemon: OOM everywhere it is reported, no orphans after down,
clear errors for limits that cannot be had."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from corral.limits.limiter import Limiter
from tests.e2e.conftest import Project, running

HOST = Limiter()
needs_cgroup = pytest.mark.skipif(not HOST.writable(), reason="no writable cgroup on this host "
                                  f"(layout: {HOST.layout.kind})")

HOG = "x = bytearray(400 * 1024 * 1024); print('survived', flush=True)"

DETACHERS = {
    "double-fork": """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                open(f"pids/{os.getpid()}", "w").close(); time.sleep(300)
            os._exit(0)
        open(f"pids/{os.getpid()}", "w").close(); time.sleep(300)
    """,
    # a daemon that detaches and wipes its environment: the CORRAL_RUN marker scan misses it
    "scrubbed": """
        import os
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execve("/bin/sh", ["sh", "-c", "touch pids/$$; exec sleep 300"], {})
            os._exit(0)
        os.execve("/bin/sh", ["sh", "-c", "touch pids/$$; exec sleep 300"], {})
    """,
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@needs_cgroup
def test_oom_kill_is_reported_in_ps_reason_events_and_metrics(project: Project) -> None:
    project.file("hog.py", HOG)
    port = _port()
    project.write(f"""
        name: oom
        metrics: {{port: {port}}}
        agents:
          hog:
            command: python3 hog.py
            resources: {{memory: 64M, cpus: 0.5, pids: 64}}
            restart: {{policy: on-failure, backoff: {{initial: 3s, max: 5s}}}}
    """)
    project.corral("up", "-d")
    from corral.api.client import Client

    events = Client(str(project.state_dir / "corral.sock")).lines("GET", "/v1/events")
    rows = project.wait_for(lambda r: r["hog.1"]["oom_killed"] and r["hog.1"]["restarts"] >= 1,
                            what="an OOM kill")
    assert rows["hog.1"]["exit_signal"] == signal.SIGKILL
    table = project.corral("ps").stdout
    assert "OOM" in table and "killed: out of memory; restarting in" in table
    seen = None
    deadline = time.monotonic() + 20
    for line in events:
        if line.startswith(b"data:"):
            event = json.loads(line[5:])
            if event.get("oom_killed") and "out of memory" in event.get("reason", ""):
                seen = event
                break
        if time.monotonic() > deadline:
            break
    events.close()
    assert seen is not None and seen["name"] == "hog.1"
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'corral_instance_oom_killed{agent="hog",instance="hog.1"} 1.0' in body
    assert not any(r["message"] == "survived" for r in project.records("hog"))


@needs_cgroup
def test_running_instances_show_their_limits_and_cgroup_usage(project: Project) -> None:
    project.file("busy.py", """
        x = bytearray(30 * 1024 * 1024)
        for i in range(0, len(x), 4096): x[i] = 1
        while True: pass
    """)
    port = _port()
    project.write(f"""
        name: usage
        metrics: {{port: {port}}}
        agents:
          busy: {{command: python3 busy.py, resources: {{cpus: 0.25, memory: 128M}}}}
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: r["busy.1"]["state"] == "running", what="running")
    assert rows["busy.1"]["limits"].startswith("cgroup")
    time.sleep(1.0)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    rss = [float(line.split()[-1]) for line in body.splitlines()
           if line.startswith("corral_instance_memory_rss_bytes{")]
    assert rss and rss[0] >= 30 * 1024 * 1024


@needs_cgroup
def test_down_leaves_no_process_of_agents_that_detach_or_scrub_their_env(
        project: Project) -> None:
    (project.root / "pids").mkdir()
    for name, code in DETACHERS.items():
        project.file(f"{name}.py", code)
    project.write("""
        name: detach
        agents:
          forker: {command: python3 double-fork.py, replicas: 2, stop: {timeout: 1s}}
          ghost: {command: python3 scrubbed.py, stop: {timeout: 1s}}
    """)
    project.corral("up", "-d")

    def pids() -> list[int]:
        return [int(p.name) for p in (project.root / "pids").iterdir()]

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(pids()) < 6:
        time.sleep(0.1)
    assert len(pids()) == 6
    try:
        project.corral("stop", "ghost")
        ghosts = [p for p in pids() if running(p)]
        assert len(ghosts) == 4, "stopping ghost left only the forker's 4 processes"
        project.corral("down")
        assert [p for p in pids() if running(p)] == []
        leftovers = [str(p) for p in _groups() if "corral-detach-" in str(p)]
        assert leftovers == [], "every group is removed after down"
    finally:
        for p in pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


@needs_cgroup
def test_groups_are_found_again_after_the_daemon_is_killed(project: Project) -> None:
    (project.root / "pids").mkdir()
    project.file("scrubbed.py", DETACHERS["scrubbed"])
    project.write("""
        name: readopt
        agents:
          ghost: {command: python3 scrubbed.py, resources: {memory: 64M}}
    """)
    project.corral("up", "-d")

    def pids() -> list[int]:
        return [int(p.name) for p in (project.root / "pids").iterdir()]

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(pids()) < 2:
        time.sleep(0.1)
    daemon = project.daemon_pid()
    assert daemon is not None and len(pids()) == 2
    try:
        os.kill(daemon, signal.SIGKILL)
        project.corral("up", "-d")  # a new daemon re-adopts the instance and its group
        row = project.ps()["ghost.1"]
        assert row["state"] == "running" and row["limits"].startswith("cgroup")
        project.corral("down")
        assert [p for p in pids() if running(p)] == []
        # this project's group only: other runs on this host may leave theirs
        from corral.lean.sha import sha256

        key = str(project.state_dir / "run")  # the process driver's key: the run dir's parent
        mine = f"corral-readopt-{sha256(key.encode()).hexdigest()[:8]}"
        assert [p for p in _groups() if p.name == mine] == []
    finally:
        for p in pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


def _groups() -> list[Path]:
    lay = HOST.layout
    roots = [*lay.v1.values(), *([lay.unified] if lay.unified else [])]
    return [p for r in dict.fromkeys(roots) for p in Path(r).glob("corral-*")]


def test_malformed_size_and_unenforceable_limit_are_one_line_each(project: Project) -> None:
    project.write("""
        name: bad
        agents:
          a: {command: sleep 1, resources: {memory: 12XB}}
    """)
    out = project.corral("config", check=False)
    assert out.returncode == 2
    assert "agents.a.resources.memory: '12XB' is not a size: write e.g. '512K', '256M', '2G'" \
        in out.stderr
    project.write("""
        name: bad
        agents:
          a: {command: sleep 300, resources: {memory_high: 1G}}
    """)
    if HOST.layout.kind == "v2":
        pytest.skip("memory_high is enforceable on this cgroup v2 host")
    out = project.corral("up", "-d", check=False)
    assert out.returncode == 1
    assert "a.1: fatal (agents.a.resources.memory_high: cgroup v1 (this host) has no " \
        "memory.high: remove it, or use memory (hard) and memory_reservation (soft))" in out.stdout
    reason = project.ps()["a.1"]["reason"]
    assert reason.startswith("agents.a.resources.memory_high: ") and "\n" not in reason
