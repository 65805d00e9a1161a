"""The restart policy as a pure function: (policy, exit, history, now) -> decision with a reason.

After Nomad's RestartTracker and PM2's exponential backoff: the delay grows by ``factor`` per
consecutive crash up to ``max``, the streak resets once an instance stayed up ``reset_after``
seconds, and more than ``max_restarts`` restarts within ``window`` ends in FATAL.
"""

from __future__ import annotations

from dataclasses import field
from typing import Literal

from corral.drivers.base import ExitResult
from corral.lean.record import Record, record
from corral.manifest.spec import RestartPolicy


@record
class History(Record):
    restarts: tuple[float, ...] = ()  # times of recent restarts, oldest first
    streak: int = 0  # consecutive short-lived runs since the last reset


@record
class Decision(Record):
    action: Literal["restart", "exit", "fatal"]
    delay: float
    reason: str
    history: History = field(default_factory=History)


def decide(
    policy: RestartPolicy,
    result: ExitResult,
    *,
    started_at: float,
    now: float,
    history: History,
) -> Decision:
    what = result.describe()
    streak = 0 if now - started_at >= policy.backoff.reset_after else history.streak
    if policy.policy == "no":
        return Decision("exit", 0.0, f"{what}; restart policy is 'no'", history)
    if policy.policy == "on-failure" and result.success:
        return Decision("exit", 0.0, f"{what}; completed successfully", history)
    recent = tuple(t for t in history.restarts if now - t < policy.window)
    if policy.max_restarts is not None and len(recent) >= policy.max_restarts:
        return Decision(
            "fatal",
            0.0,
            f"crash loop: {len(recent)} restarts within {policy.window:g}s "
            f"(max_restarts: {policy.max_restarts}); last: {what}",
            History(recent, streak),
        )
    b = policy.backoff
    try:
        delay = min(b.max, b.initial * b.factor**streak)
    except OverflowError:  # factor ** streak past float's range, after ~1,750 restarts at 1.5
        delay = b.max
    return Decision(
        "restart",
        delay,
        f"{what}; restarting in {delay:.3g}s (policy {policy.policy})",
        History((*recent, now + delay), streak + 1),
    )
