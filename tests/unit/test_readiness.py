"""What ``--wait`` waits for: ready, failed, or still on its way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corral.manifest.loader import load_text
from corral.manifest.spec import Agent
from corral.runtime.state import Health, State
from corral.runtime.views import Snapshot, readiness

MANIFEST = """\
name: ready
agents:
  web: {command: sleep 1, readiness: {tcp: 8080}}
  plain: {command: sleep 1}
  lined: {command: sleep 1, ready_log_line: "listening"}
  job: {class: compute, command: "true"}
"""


def _specs(tmp_path: Path) -> dict[str, Agent]:
    return load_text(MANIFEST, project_dir=str(tmp_path), environ={}).agents


def _snap(state: State, health: Health = Health.NONE, **more: Any) -> Snapshot:
    return Snapshot(name="x.1", agent="x", index=1, state=state, health=health, **more)


def test_a_probed_service_is_ready_once_healthy(tmp_path: Path) -> None:
    web = _specs(tmp_path)["web"]
    assert readiness(_snap(State.RUNNING, Health.UNKNOWN), web) == "pending"
    assert readiness(_snap(State.RUNNING, Health.UNHEALTHY), web) == "pending"
    assert readiness(_snap(State.RUNNING, Health.HEALTHY), web) == "ready"


def test_without_a_probe_running_is_ready_and_a_ready_line_is_waited_for(
        tmp_path: Path) -> None:
    specs = _specs(tmp_path)
    assert readiness(_snap(State.RUNNING), specs["plain"]) == "ready"
    assert readiness(_snap(State.RUNNING), specs["lined"]) == "pending"
    assert readiness(_snap(State.RUNNING, log_ready=True), specs["lined"]) == "ready"


def test_a_one_shot_is_ready_once_completed_with_0(tmp_path: Path) -> None:
    job = _specs(tmp_path)["job"]
    assert readiness(_snap(State.RUNNING), job) == "pending"
    assert readiness(_snap(State.EXITED, exit_code=0), job) == "ready"
    assert readiness(_snap(State.EXITED, exit_code=3), job) == "failed"
    assert readiness(_snap(State.EXITED, exit_code=0, rerun=True), job) == "pending"


def test_failures_and_the_ways_on(tmp_path: Path) -> None:
    plain = _specs(tmp_path)["plain"]
    for state in (State.FATAL, State.STOPPED, State.BLOCKED):
        assert readiness(_snap(state), plain) == "failed", state
    assert readiness(_snap(State.BACKOFF, reason="exit 1; restarting in 1s"), plain) == "failed"
    assert readiness(_snap(State.BACKOFF, reason="restarting on request"), plain) == "pending"
    for state in (State.CREATED, State.WAITING, State.PREPARING, State.STARTING,
                  State.STOPPING):
        assert readiness(_snap(state), plain) == "pending", state
