"""``depends_on`` verdicts: a result met only while it is the current run's."""

from __future__ import annotations

from typing import Any

from corral.runtime.dependencies import condition
from corral.runtime.state import Health, State
from corral.runtime.views import Snapshot


def _snap(state: State, **more: Any) -> Snapshot:
    return Snapshot(name="job.1", agent="job", index=1, state=state, health=Health.NONE,
                    **more)


def test_a_completed_job_meets_its_condition() -> None:
    assert condition("job", "completed_successfully", [_snap(State.EXITED, exit_code=0)]) \
        == "met"


def test_a_job_asked_to_run_again_meets_nothing_until_its_new_run_ends() -> None:
    """Its old success belongs to a run before the one asked of it."""
    stale = _snap(State.EXITED, exit_code=0, rerun=True)
    assert condition("job", "completed_successfully", [stale]) == "pending"
    assert condition("job", "started", [stale]) == "pending"
    # a failed dependency asked to start again is pending, not a failure, meanwhile
    retried = _snap(State.FATAL, reason="port taken", rerun=True)
    assert condition("job", "healthy", [retried]) == "pending"
    assert condition("job", "healthy", [_snap(State.FATAL, reason="port taken")]) \
        == "dependency job failed: port taken"


def test_a_new_instance_meets_nothing_before_it_ran() -> None:
    assert condition("job", "completed_successfully", [_snap(State.CREATED)]) == "pending"
