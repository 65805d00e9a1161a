from __future__ import annotations

import pytest

from corral.runtime.state import State, TransitionError, check_transition


@pytest.mark.parametrize(("old", "new"), [
    (State.CREATED, State.WAITING), (State.WAITING, State.STARTING),
    (State.STARTING, State.RUNNING), (State.RUNNING, State.BACKOFF),
    (State.BACKOFF, State.STARTING), (State.RUNNING, State.STOPPING),
    (State.STOPPING, State.STOPPED), (State.RUNNING, State.EXITED),
    (State.EXITED, State.STARTING), (State.FATAL, State.STARTING),
    (State.CREATED, State.RUNNING), (State.RUNNING, State.STOPPED),
])
def test_allowed(old: State, new: State) -> None:
    check_transition(old, new)


@pytest.mark.parametrize(("old", "new"), [
    (State.STOPPED, State.RUNNING), (State.EXITED, State.RUNNING),
    (State.WAITING, State.RUNNING), (State.FATAL, State.RUNNING),
    (State.CREATED, State.EXITED), (State.BACKOFF, State.RUNNING),
])
def test_forbidden(old: State, new: State) -> None:
    with pytest.raises(TransitionError):
        check_transition(old, new)
