"""Liveness for agents alive but stuck: ``silence`` (no output for a while) and ``heartbeat``
(a file the agent touches), through the real CLI and daemon."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Project


def _restarted(name: str) -> Callable[[dict[str, dict[str, Any]]], bool]:
    return lambda rows: name in rows and rows[name]["restarts"] >= 1


def test_an_agent_that_prints_once_then_hangs_is_restarted_by_silence(project: Project) -> None:
    project.write("""
        name: quiet
        agents:
          stuck:
            command: ["sh", "-c", "echo started; exec sleep 1000"]
            liveness: {silence: 2s, period: 1s, failure_threshold: 1}
    """)
    project.corral("up", "-d")
    project.wait_for(_restarted("stuck.1"), timeout=60, what="a restart by the silence probe")
    events = project.corral("events", "--json").stdout
    assert "no output for" in events and "silence: 2s" in events


_COUNTER = """
    i=0
    while true; do i=$((i+1)); [ -z "$1" ] || touch "$1"; echo "tick $i"; sleep 0.2; done
"""


def test_a_chatty_agent_is_left_alone_by_silence(project: Project) -> None:
    project.file("count.sh", _COUNTER)
    project.write("""
        name: chatty
        agents:
          talker:
            command: [sh, count.sh]
            liveness: {silence: 1s, period: 0.3s, failure_threshold: 1}
    """)
    project.corral("up", "-d")
    # a dozen probe periods, each past the silence limit, have gone by once tick 25 is logged
    project.wait_for(lambda _: any(r["message"] == "tick 25" for r in project.records("talker")),
                     timeout=60, what="tick 25")
    row = project.ps()["talker.1"]
    assert row["restarts"] == 0 and row["health"] == "healthy", row


def test_a_heartbeat_agent_that_stops_touching_its_file_is_restarted(project: Project) -> None:
    project.write("""
        name: beats
        agents:
          worker:
            command: ["sh", "-c", "touch run/hb; sleep 0.5; touch run/hb; exec sleep 1000"]
            liveness: {heartbeat: run/hb, within: 2s, period: 0.5s, failure_threshold: 1}
    """)
    (project.root / "run").mkdir()
    project.corral("up", "-d")
    project.wait_for(_restarted("worker.1"), timeout=60, what="a restart by the heartbeat probe")
    events = project.corral("events", "worker", "--json").stdout
    assert "heartbeat run/hb not touched for" in events


def test_a_heartbeat_agent_that_keeps_touching_is_left_alone(project: Project) -> None:
    project.file("count.sh", _COUNTER)
    project.write("""
        name: beats
        agents:
          worker:
            command: [sh, count.sh, hb]
            liveness: {heartbeat: hb, within: 1s, period: 0.3s, failure_threshold: 1}
    """)
    project.corral("up", "-d")
    project.wait_for(lambda _: any(r["message"] == "tick 25" for r in project.records("worker")),
                     timeout=60, what="tick 25")
    row = project.ps()["worker.1"]
    assert row["restarts"] == 0 and row["health"] == "healthy", row


def test_a_heartbeat_link_out_of_the_workdir_or_a_fifo_does_not_pass(
        project: Project, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside: Path = tmp_path_factory.mktemp("outside") / "fresh"
    project.file("link.sh", f"""
        ln -sf {outside} hb
        while true; do touch {outside}; sleep 0.2; done
    """)
    project.write("""
        name: sneaky
        agents:
          linker:
            # a fresh file, but outside the workdir: the probe must not look through the link
            command: [sh, link.sh]
            liveness: {heartbeat: hb, within: 5s, period: 0.5s, failure_threshold: 1}
          piper:
            workdir: pipe
            # a fifo: looking at it must not hang the probe (nor the daemon)
            command: ["sh", "-c", "rm -f hb; mkfifo hb; exec sleep 1000"]
            liveness: {heartbeat: hb, within: 5s, period: 0.5s, failure_threshold: 1}
    """)
    (project.root / "pipe").mkdir()
    project.corral("up", "-d")
    rows = project.wait_for(lambda rows: _restarted("linker.1")(rows)
                            and _restarted("piper.1")(rows),
                            timeout=60, what="both restarted")
    assert rows
    events = project.corral("events", "--json").stdout
    assert "outside" in events and "not a regular file" in events
