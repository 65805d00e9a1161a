"""``depends_on`` as the runners see it: whether a dependency's condition is met yet, and the
wait until every required one is (or one can never be).

The verdict of one condition is ``"met"``, ``"pending"``, or the one line saying why it can
never be met (the dependency failed, or ended before it was healthy or ready); a runner whose
required dependency cannot be met goes FATAL with that line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from corral.manifest.spec import Manifest
from corral.runtime.state import Health, State
from corral.runtime.views import Snapshot


def condition(agent: str, condition: str, snaps: Iterable[Snapshot]) -> str:
    """'met', 'pending', or why ``condition`` on ``agent`` (its instances' ``snaps``) can
    never be met."""
    snaps = list(snaps)
    if not snaps:
        return "met"
    for s in snaps:
        if s.rerun:  # its result is of a run before the one asked of it
            return "pending"
        if s.state is State.FATAL:
            return f"dependency {agent} failed: {s.reason}"
        ended = s.state in (State.EXITED, State.STOPPED)
        if condition == "started":
            ok = s.state in (State.RUNNING, State.EXITED)
        elif condition == "healthy":
            if ended:
                return f"dependency {agent} ended before it was healthy ({s.reason})"
            ok = s.state is State.RUNNING and s.health is Health.HEALTHY
        elif condition == "log_ready":
            if ended:
                return f"dependency {agent} ended before its ready line ({s.reason})"
            ok = s.state is State.RUNNING and s.log_ready
        else:  # completed, completed_successfully
            ok = s.state is State.EXITED
            if ok and condition == "completed_successfully" and s.exit_code != 0:
                return f"dependency {agent} did not complete successfully ({s.reason})"
        if not ok:
            return "pending"
    return "met"


async def wait(agent: str, *, manifest: Callable[[], Manifest | None],
               snapshots: Callable[[str], Iterable[Snapshot]],
               changed: Callable[[], asyncio.Event]) -> str | None:
    """Until every dependency of ``agent`` is met: None, or why a required one never will
    be. Looked at again on each change of any instance (``changed``: the event the next
    change sets); the manifest is read anew each time (a reconcile may have replaced it)."""
    while True:
        current = manifest()
        spec = current.agents.get(agent) if current is not None else None
        if spec is None:
            return None
        pending = False
        for dep, rule in spec.depends_on.items():
            verdict = condition(dep, rule.condition, snapshots(dep))
            if verdict == "pending":
                pending = True
            elif verdict != "met" and rule.required:
                return verdict
        if not pending:
            return None
        await changed().wait()
