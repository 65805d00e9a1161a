"""The restart policy is pure: every decision is exact for given times."""

from __future__ import annotations

import pytest

from corral.drivers.base import ExitResult
from corral.manifest import validation
from corral.manifest.spec import RestartPolicy
from corral.runtime.restart import History, decide

CRASH = ExitResult(code=1)
OK = ExitResult(code=0)


def policy(**kw: object) -> RestartPolicy:
    # validated as the CLI does, run on the plain form as the daemon does
    return validation.agent({"command": ["x"], "restart": kw}).restart


def test_no_never_restarts() -> None:
    d = decide(policy(policy="no"), CRASH, started_at=0, now=1, history=History())
    assert d.action == "exit"
    assert "restart policy is 'no'" in d.reason


def test_on_failure_keeps_a_success_down() -> None:
    d = decide(policy(policy="on-failure"), OK, started_at=0, now=1, history=History())
    assert d.action == "exit"
    assert "completed successfully" in d.reason


@pytest.mark.parametrize("name", ["always", "unless-stopped"])
def test_always_restarts_even_a_success(name: str) -> None:
    d = decide(policy(policy=name), OK, started_at=0, now=1, history=History())
    assert d.action == "restart"


def test_backoff_grows_by_factor_up_to_the_cap() -> None:
    p = policy(policy="always", backoff={"initial": 1, "factor": 2, "max": 5, "reset_after": 30})
    h, now, delays = History(), 0.0, []
    for _ in range(5):
        d = decide(p, CRASH, started_at=now, now=now + 1, history=h)
        delays.append(d.delay)
        h, now = d.history, now + 1 + d.delay
    assert delays == [1, 2, 4, 5, 5]


def test_backoff_resets_after_stable_uptime() -> None:
    p = policy(policy="always", backoff={"initial": 1, "factor": 2, "max": 60, "reset_after": 30})
    h = History(restarts=(), streak=4)
    short = decide(p, CRASH, started_at=100, now=110, history=h)
    assert short.delay == 16
    stable = decide(p, CRASH, started_at=100, now=131, history=h)
    assert stable.delay == 1
    assert stable.history.streak == 1


def test_crash_loop_within_the_window_is_fatal_with_the_reason() -> None:
    p = policy(policy="on-failure", max_restarts=2, window=60,
               backoff={"initial": 0, "factor": 1, "max": 0, "reset_after": 30})
    h = History()
    for t in (1.0, 2.0):
        d = decide(p, CRASH, started_at=t - 1, now=t, history=h)
        assert d.action == "restart"
        h = d.history
    d = decide(p, CRASH, started_at=2, now=3, history=h)
    assert d.action == "fatal"
    assert "crash loop: 2 restarts within 60s (max_restarts: 2)" in d.reason
    assert "exited with code 1" in d.reason


def test_restarts_outside_the_window_do_not_count() -> None:
    p = policy(policy="on-failure", max_restarts=1, window=10)
    h = History(restarts=(0.0,), streak=0)
    d = decide(p, CRASH, started_at=20, now=21, history=h)
    assert d.action == "restart"


def test_oom_and_signal_are_named_in_the_reason() -> None:
    d = decide(policy(policy="on-failure"), ExitResult(code=137, signal=9, oom_killed=True),
               started_at=0, now=1, history=History())
    assert "out of memory" in d.reason
    d = decide(policy(policy="on-failure"), ExitResult(code=143, signal=15),
               started_at=0, now=1, history=History())
    assert "killed by SIGTERM" in d.reason


def test_a_long_crash_loop_stays_at_the_cap_instead_of_overflowing() -> None:
    # 1.5 ** 2000 is past float's range: the delay is the cap, not an OverflowError
    p = policy(policy="always", backoff={"initial": 1, "factor": 1.5, "max": 15})
    d = decide(p, CRASH, started_at=0, now=1, history=History(restarts=(), streak=2000))
    assert (d.action, d.delay) == ("restart", 15)
