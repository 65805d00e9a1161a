"""``on:`` hooks run on real crashes, and ``corral events``: the kept history (under ``up -d``,
after ``down``), followed with ``-f``, through the real CLI and daemon."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corral.limits.limiter import Limiter
from tests.e2e.conftest import CORRAL, Project, running

# a hook that keeps the event it was given on stdin, one file per event
KEEP = """
    import json, os, sys
    event = json.load(sys.stdin)
    os.makedirs("got", exist_ok=True)
    with open(f"got/{event['event']}-{event['id']}.json", "w") as f:
        json.dump(event, f)
"""


def _until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _got(root: Path, kind: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((root / "got").glob(f"{kind}-*.json"))
            if p.read_text().endswith("}")]


def _events(project: Project, *args: str) -> list[dict[str, Any]]:
    out = project.corral("events", "--json", *args).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_restart_and_fatal_hooks_get_the_event_as_json_on_stdin(project: Project) -> None:
    project.file("keep.py", KEEP)
    project.write("""
        name: hooked
        agents:
          crasher:
            command: ["sh", "-c", "echo going down; exit 3"]
            restart: {policy: on-failure, max_restarts: 2, window: 60s,
                      backoff: {initial: 0.2s, max: 0.2s}}
            on:
              restart: python3 keep.py
              fatal: [[python3, keep.py]]
    """)
    project.corral("up", "-d")
    fatal = _until(lambda: _got(project.root, "fatal"), "the fatal hook's file")
    restarts = _until(lambda: len(_got(project.root, "restart")) >= 2 and
                      _got(project.root, "restart"), "two restart hooks' files")
    (event,) = fatal
    assert event["agent"] == "crasher" and event["instance"] == "crasher.1"
    assert event["event"] == "fatal" and event["state"] == "fatal"
    assert event["exit_code"] == 3 and "crash loop" in event["reason"]
    assert event["project"] == "hooked" and event["restarts"] == 2
    assert isinstance(event["time"], float)
    assert [r["restarts"] for r in restarts] == [1, 2]
    assert all(r["exit_code"] == 3 and "restarting in" in r["reason"] for r in restarts)
    # the hooks' runs are events too
    hooks = _until(lambda: [e for e in _events(project, "crasher") if e["event"] == "hook"
                            and e["hook"] == "fatal"], "the fatal hook's event")
    assert hooks[0]["result"] == "ok" and hooks[0]["exit_code"] == 0


def test_a_hook_past_its_timeout_is_killed_and_a_failing_one_reported(project: Project) -> None:
    project.file("hang.sh", """
        echo $$ > hang.pid
        echo waiting
        sleep 1000
    """)
    project.write("""
        name: slow
        agents:
          job:
            command: ["sh", "-c", "exit 1"]
            restart: {policy: on-failure, max_restarts: 1, window: 60s,
                      backoff: {initial: 0.2s, max: 0.2s}}
            on:
              fatal: [{command: [sh, hang.sh], timeout: 1s}]
              restart: ["sh -c 'echo boom; exit 7'"]
    """)
    project.corral("up", "-d")

    def hook_events() -> dict[str, dict[str, Any]]:
        return {e["hook"]: e for e in _events(project, "job") if e["event"] == "hook"}

    hooks = _until(lambda: len(hook_events()) == 2 and hook_events(), "both hooks' events")
    assert hooks["fatal"]["result"] == "timeout" and "killed after" in hooks["fatal"]["reason"]
    pid = int((project.root / "hang.pid").read_text())
    assert not running(pid)
    with pytest.raises(ProcessLookupError):  # its whole group: the sleep too
        os.killpg(pid, 0)
    assert hooks["restart"]["result"] == "failed" and hooks["restart"]["exit_code"] == 7
    assert hooks["restart"]["output"].strip() == "boom"
    assert "hook" in project.daemon_log() and "boom" in project.daemon_log()
    text = project.corral("events", "job").stdout
    assert "restart hook failed" in text and "    boom" in text
    # a failing hook changes nothing of the agent's: it went fatal by its own policy
    assert project.ps()["job.1"]["state"] == "fatal"


@pytest.mark.skipif(not Limiter().writable(), reason="no writable cgroup on this host")
def test_an_oom_kill_is_an_event_and_runs_the_oom_hook(project: Project) -> None:
    project.file("keep.py", KEEP)
    project.file("hog.py", "x = bytearray(400 * 1024 * 1024)\n")
    project.write("""
        name: oomy
        agents:
          hog:
            command: python3 hog.py
            resources: {memory: 64M}
            restart: {policy: on-failure, backoff: {initial: 5s, max: 5s}}
            on: {oom: python3 keep.py}
    """)
    project.corral("up", "-d")
    (event, *_) = _until(lambda: _got(project.root, "oom"), "the oom hook's file")
    assert event["instance"] == "hog.1" and event["oom_killed"] is True
    kinds = [e["event"] for e in _events(project, "hog")]
    assert "oom" in kinds and kinds.index("oom") < kinds.index("restart")


def test_events_show_state_changes_and_restarts_after_up_d_and_after_down(
        project: Project) -> None:
    project.write("""
        name: history
        agents:
          steady:
            command: ["sleep", "1000"]
          flaky:
            command: ["sh", "-c", "echo bad config; echo '  line two of the error' >&2; exit 2"]
            restart: {policy: on-failure, max_restarts: 1, window: 60s,
                      backoff: {initial: 0.2s, max: 0.2s}}
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: r["flaky.1"]["state"] == "fatal", what="flaky fatal")
    events = _events(project)
    mine = [(e["instance"], e["event"], e["state"]) for e in events]
    assert ("steady.1", "state", "running") in mine
    assert ("flaky.1", "restart", "backoff") in mine and ("flaky.1", "fatal", "fatal") in mine
    restart = next(e for e in events if e["event"] == "restart")
    assert "exited with code 2" in restart["reason"] and restart["exit_code"] == 2
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert {e["instance"] for e in _events(project, "flaky")} == {"flaky.1"}
    assert len(_events(project, "--tail", "2")) == 2
    text = project.corral("events", "flaky").stdout
    assert " flaky.1 restart [backoff] exited with code 2" in text
    project.corral("down")
    after = _events(project)  # read from the store: no daemon now
    assert [e["id"] for e in after][: len(events)] == [e["id"] for e in events]
    assert after[-1]["state"] == "stopped"
    missing = project.corral("events", "nosuch", check=False)
    assert missing.returncode == 4 and "nosuch" in missing.stderr
    follow = project.corral("events", "-f", check=False)
    assert follow.returncode == 3 and "not running" in follow.stderr


def test_events_follow_prints_the_history_then_new_events(project: Project) -> None:
    project.write("""
        name: follow
        agents:
          web:
            command: ["sleep", "1000"]
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: r["web.1"]["state"] == "running", what="web running")
    follower = subprocess.Popen([*CORRAL, "-f", str(project.manifest), "events", "-f",
                                 "--json", "web"], cwd=project.root, stdout=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL)
    try:
        assert follower.stdout is not None
        first = json.loads(follower.stdout.readline())
        assert first["instance"] == "web.1" and first["id"] >= 1  # the history first
        project.corral("restart", "web")
        while True:  # then what happens now, as it happens
            event = json.loads(follower.stdout.readline())
            if event["event"] == "restart":
                break
        assert event["reason"] == "restarting on request"
    finally:
        follower.kill()
        follower.wait()
        if follower.stdout is not None:
            follower.stdout.close()


def test_a_bad_probe_or_hook_is_one_clear_line(project: Project) -> None:
    project.write("""
        name: bad
        agents:
          a:
            command: ["true"]
            liveness: {tcp: 80, within: 5s}
    """)
    bad = project.corral("config", check=False)
    assert bad.returncode == 2 and "within goes with heartbeat" in bad.stderr
    assert "Traceback" not in bad.stderr
    project.write("""
        name: bad
        agents:
          a:
            command: ["true"]
            on: {crash: [notify]}
    """)
    bad = project.corral("config", check=False)
    assert bad.returncode == 2 and "agents.a.on.crash" in bad.stderr
    assert "fatal" in bad.stderr and "Traceback" not in bad.stderr


def test_a_multi_line_error_is_whole_in_events(project: Project) -> None:
    """uv's error runs over lines: ``events`` keeps all of them (``ps`` is a table)."""
    project.file("requirements.txt", "six===\n")
    project.write("""
        name: uverr
        agents:
          broken:
            isolation: venv
            venv: {requirements: requirements.txt}
            command: python -c "print(1)"
    """)
    project.corral("up", "-d", check=False)
    project.wait_for(lambda r: r["broken.1"]["state"] == "fatal", timeout=120,
                     what="the venv build failing")
    (fatal,) = [e for e in _events(project, "broken") if e["event"] == "fatal"]
    assert "venv build failed" in fatal["reason"] and "\n" in fatal["reason"]
    text = project.corral("events", "broken").stdout.splitlines()
    first = next(i for i, line in enumerate(text) if " broken.1 fatal [fatal] " in line)
    assert text[first + 1].startswith("    ") and "Couldn't parse requirement" in text[first + 1]
    assert any(line.strip() == "six===" for line in text[first + 1:])
