"""The fleet's history: what happened to each instance and why, for ``corral events``.

Each snapshot change the supervisor sees is read here as the events it holds (``changes``):
a state change, a restart with its reason, a fatal end, an OOM kill, a probe turning the
instance unhealthy or healthy again. Hook runs are events too (``runtime.hooks``). Events are
kept in the state store, bounded (``store.MAX_EVENTS``), so they outlive the attached ``up``
that used to be the only place restarts showed, and are handed to live followers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from corral.runtime.state import Health, State
from corral.runtime.store import Store
from corral.runtime.views import Snapshot

Event = dict[str, Any]

_RUNNING = (State.RUNNING, State.STOPPING)


def changes(old: Snapshot, new: Snapshot, now: float) -> list[Event]:
    """The events in one snapshot change (none when only its pid or handle moved)."""
    out: list[Event] = []
    if new.state is not old.state:
        if old.state in _RUNNING and new.state not in _RUNNING and new.oom_killed:
            out.append(_event(new, "oom", now, previous=old.state))
        if new.state is State.BACKOFF and new.restarts > old.restarts:
            kind = "restart"
        elif new.state is State.FATAL:
            kind = "fatal"
        else:
            kind = "state"
        out.append(_event(new, kind, now, previous=old.state))
    elif new.health is not old.health and Health.UNHEALTHY in (old.health, new.health) \
            and new.health is not Health.UNKNOWN:
        out.append(_event(new, new.health.value, now, previous=old.state))
    return out


def _event(s: Snapshot, kind: str, now: float, *, previous: State) -> Event:
    return {"time": now, "agent": s.agent, "instance": s.name, "event": kind,
            "state": s.state.value, "previous": previous.value, "health": s.health.value,
            "reason": s.reason, "exit_code": s.exit_code, "exit_signal": s.exit_signal,
            "oom_killed": s.oom_killed, "restarts": s.restarts}


class Journal:
    """Events kept (in the store) and handed to listeners as they are kept (the streams of
    ``/v1/events?journal=1``: what ``corral events -f`` follows)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._listeners: list[Callable[[Event], None]] = []

    def record(self, event: Event) -> Event:
        """Keep ``event`` (it gets its ``id``) and hand it to the listeners."""
        event = self._store.add_event(event)
        for listener in list(self._listeners):
            listener(event)
        return event

    def listen(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` with each event kept from now on; returns what stops that."""
        self._listeners.append(callback)
        return functools.partial(self._listeners.remove, callback)

    def history(self, agents: list[str] | None = None, tail: int | None = None
                ) -> list[Event]:
        return self._store.events(agents, tail)
