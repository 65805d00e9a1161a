"""Scheduled agents: the daemon runs an instance at the times its ``schedule:`` names.

Each run is a one-shot of the instance, exactly as ``corral start`` makes one (its command,
level, environment): ``Scheduled`` asks the instance's runner to start and follows its state
changes (``changed``, called by the supervisor on every change) to open and close the run's
record. Runs are numbered from 1 per instance and kept in the store (``corral ps --all``);
the instance's log records carry the number of the run that wrote them (``logs --run N``).
The last scheduled time is stored too, so that a run missed while the daemon or the fleet
was down is made once on its return when ``catch_up`` asks (systemd's ``Persistent=``).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from corral.logs.sink import InstanceOutput
from corral.manifest.spec import Schedule
from corral.manifest.timetable import cron_after
from corral.runtime.health import Clock
from corral.runtime.runner import Runner
from corral.runtime.state import State
from corral.runtime.store import Run, Store
from corral.runtime.views import Snapshot

# an instance at rest: a start request begins a run
RESTING = frozenset({State.CREATED, State.STOPPED, State.EXITED, State.FATAL})
# a run has ended once the instance is in one of these (BACKOFF: replaced, or retried)
ENDED = frozenset({State.BACKOFF, State.STOPPED, State.EXITED, State.FATAL})
# where a run begins: the first state a start request leads to
BEGUN = frozenset({State.WAITING, State.BLOCKED, State.PREPARING})


def first_after(schedule: Schedule, anchor: float) -> float:
    """The first scheduled time after ``anchor``."""
    if schedule.every is not None:
        return anchor + schedule.every
    assert schedule.cron is not None
    return cron_after(schedule.cron, schedule.timezone, anchor)


def next_slot(schedule: Schedule, anchor: float, now: float) -> float:
    """The next scheduled time after ``now``: for ``every``, on the grid ``anchor + k*every``
    (a daemon back from a pause keeps the phase); for ``cron``, its next time."""
    first = first_after(schedule, anchor)
    if first > now:
        return first
    if schedule.every is not None:
        return anchor + schedule.every * (math.floor((now - anchor) / schedule.every) + 1)
    return first_after(schedule, now)


def missed(schedule: Schedule, anchor: float | None, now: float) -> bool:
    """Whether a scheduled time came between ``anchor`` (the last one) and ``now``."""
    return anchor is not None and first_after(schedule, anchor) <= now


def _status(snap: Snapshot, replacing: bool) -> str:
    if snap.state is State.BACKOFF and replacing:
        return "replaced"
    if snap.state is State.STOPPED:
        return "stopped"
    if snap.state is State.EXITED and snap.exit_code is None and snap.exit_signal is None:
        return "ended"  # a re-adopted run: not our child, so its exit code is not known
    return "succeeded" if snap.state is State.EXITED and snap.exit_code == 0 else "failed"


class Scheduled:
    """The schedule of one instance, while its fleet is up (``begin``) and not paused."""

    def __init__(self, runner: Runner, output: InstanceOutput, schedule: Schedule, store: Store,
                 clock: Clock, *, rng: Callable[[], float] = random.random) -> None:
        self.runner = runner
        self.schedule = schedule
        self.instance = runner.task.instance
        self._output = output
        self._store = store
        self._clock = clock
        self._rng = rng
        self.anchor, self.active = store.schedule(self.instance)
        runs = [r for r in store.runs(self.instance) if r.status != "skipped"]
        last_number = store.last_run(self.instance)
        self.number = last_number.number if last_number else 0
        self.last: Run | None = runs[-1] if runs else None
        self.current = self.last if self.last and self.last.status == "running" else None
        if self.current is not None:  # a run the last daemon left going: its lines go on
            output.set_run(self.current.number)
        self.next_at: float | None = None
        self._pending: str | None = None  # a run asked for, until the instance begins it
        self._queued: str | None = None  # overlap: queue (the trigger that waits)
        self._replacing = False
        self._task: asyncio.Task[None] | None = None

    # --- the schedule ---------------------------------------------------------------------

    def begin(self, *, fresh: bool, run: str | None = None) -> None:
        """Start following the schedule. ``fresh``: the fleet comes up (``up``), so
        ``run_on_start`` runs it now; else the daemon came back to a fleet that was up.
        Either way a missed time is made up once with ``catch_up``. ``run``: the trigger of
        a run made now whatever the schedule says."""
        self.pause(keep=True)
        now = self._clock.time()
        first = (run if run is not None
                 else "start" if fresh and self.schedule.run_on_start
                 else "catch-up" if self.schedule.catch_up and missed(self.schedule, self.anchor,
                                                                      now)
                 else None)
        if first is not None or self.anchor is None:
            self.anchor = now  # the schedule's phase: from now on, as if a time came now
        self.active = True
        self._store.put_schedule(self.instance, self.anchor, True)
        if first is not None:
            self.fire(first)
        self._task = asyncio.create_task(self._follow(), name=f"schedule:{self.instance}")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A schedule ends only when paused or closed; a bug that ends it is said, once."""
        if not task.cancelled() and (exc := task.exception()) is not None:
            import sys
            import traceback

            print(f"corral: the schedule of {self.instance} failed; `corral start "
                  f"{self.instance}` resumes it:", file=sys.stderr)
            traceback.print_exception(exc, file=sys.stderr)
            self.next_at = None
            self.active = False

    def pause(self, *, keep: bool = False) -> None:
        """Stop following it (``corral stop``, ``down``); ``keep``: only the task."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.next_at = None
        if not keep:
            self.active = False
            self._queued = self._pending = None
            self._store.put_schedule(self.instance, self.anchor, False)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _follow(self) -> None:
        while True:
            assert self.anchor is not None
            slot = next_slot(self.schedule, self.anchor, self._clock.time())
            self.next_at = slot + self.schedule.jitter * self._rng()
            await self._clock.sleep(max(0.0, self.next_at - self._clock.time()))
            self.anchor = slot
            self._store.put_schedule(self.instance, slot, True)
            self.fire("schedule")

    def run_now(self, *, replace: bool = False) -> None:
        """``corral start`` (``replace``: ``restart``): a run now, and the schedule on."""
        if not self.active:
            self.begin(fresh=False, run="manual")
        elif replace and self._pending is None and self.runner.snapshot.state is State.RUNNING:
            self._pending, self._replacing = "manual", True
            self.runner.request("restart")
        else:
            self.fire("manual")

    # --- runs -----------------------------------------------------------------------------

    def fire(self, trigger: str) -> None:
        """A run is due: start it, or, while the last one goes, as ``overlap`` says."""
        state = self.runner.snapshot.state
        if self._pending is None and state in RESTING:
            self._pending = trigger
            self.runner.request("start")
        elif self.schedule.overlap == "replace" and self._pending is None \
                and state is State.RUNNING:
            self._pending, self._replacing = trigger, True
            self.runner.request("restart")
        elif self.schedule.overlap == "queue" and self._queued is None:
            self._queued = trigger
        else:
            now = self._clock.time()
            self.number += 1
            self._store.put_run(Run(self.instance, self.number, self.runner.task.agent,
                                    trigger, now, now, None, "skipped"))

    def changed(self, old: Snapshot, new: Snapshot) -> None:
        """The supervisor's hook on each state change of the instance."""
        if new.state in BEGUN and (old.state in RESTING or old.state is State.BACKOFF):
            trigger = self._pending or ("restart" if old.state is State.BACKOFF else "manual")
            self._pending = None
            self._open(trigger)
        elif new.state in ENDED and old.state not in ENDED and self.current is not None:
            self._close(new)
            if new.state in RESTING and self._queued is not None:
                self._queued = None
                self.fire("queued")

    def _open(self, trigger: str) -> None:
        self.number += 1
        self._output.set_run(self.number)
        self.current = self.last = Run(self.instance, self.number, self.runner.task.agent,
                                       trigger, self._clock.time())
        self._store.put_run(self.current)

    def _close(self, snap: Snapshot) -> None:
        assert self.current is not None
        ended = replace(self.current, ended_at=self._clock.time(), exit_code=snap.exit_code,
                        status=_status(snap, self._replacing))
        self._replacing = False
        self.current, self.last = None, ended
        self._store.put_run(ended)

    def recovered(self, adopted: bool) -> None:
        """After a daemon restart: a run whose instance is gone ended while no one watched."""
        if self.current is not None and not adopted:
            lost = replace(self.current, ended_at=self._clock.time(), status="lost")
            self.current, self.last = None, lost
            self._store.put_run(lost)

    def view(self) -> dict[str, Any]:
        """What ``corral ps`` shows: the last run and the next time."""
        return {"last_run": run_view(self.last) if self.last else None,
                "next_run": self.next_at, "active": self.active}


def run_view(run: Run) -> dict[str, Any]:
    return {"instance": run.instance, "agent": run.agent, "run": run.number,
            "trigger": run.trigger, "started_at": run.started_at, "ended_at": run.ended_at,
            "exit_code": run.exit_code, "status": run.status}
