"""Instance states and the transitions allowed between them (supervisord's explicit machine).

A runner may only move its instance along an edge listed here; anything else is a bug and
raises, so an impossible state never reaches ``corral ps``.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    CREATED = "created"  # known, not yet scheduled
    WAITING = "waiting"  # waiting for its dependencies' conditions
    PREPARING = "preparing"  # the driver builds what it needs (a venv, an image)
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"  # stopped on request; stays down
    EXITED = "exited"  # ended and its restart policy keeps it down; the exit code is the result
    BACKOFF = "backoff"  # crashed; waiting before the next start
    FATAL = "fatal"  # cannot run: start failed, crash loop, a failed required dependency
    BLOCKED = "blocked"  # needs the user first (a secret it cannot get); retried meanwhile


_ALLOWED: dict[State, frozenset[State]] = {
    State.CREATED: frozenset({State.WAITING, State.PREPARING, State.STARTING, State.STOPPED,
                              State.RUNNING,  # re-adopted after a daemon restart
                              State.BLOCKED}),
    State.WAITING: frozenset({State.PREPARING, State.STARTING, State.STOPPED, State.FATAL,
                              State.BLOCKED}),
    State.BLOCKED: frozenset({State.WAITING, State.PREPARING, State.STOPPED, State.FATAL}),
    State.PREPARING: frozenset({State.STARTING, State.STOPPED, State.FATAL, State.BACKOFF}),
    State.STARTING: frozenset({State.RUNNING, State.FATAL, State.BACKOFF, State.STOPPED,
                               State.EXITED}),
    # RUNNING -> STOPPED: a stop request that arrived in the same tick as the exit
    State.RUNNING: frozenset({State.STOPPING, State.STOPPED, State.EXITED, State.BACKOFF,
                              State.FATAL}),
    State.STOPPING: frozenset({State.STOPPED, State.EXITED, State.BACKOFF, State.FATAL}),
    State.STOPPED: frozenset({State.WAITING, State.PREPARING, State.STARTING, State.BLOCKED}),
    State.EXITED: frozenset({State.WAITING, State.PREPARING, State.STARTING, State.STOPPED,
                             State.BLOCKED}),
    State.BACKOFF: frozenset({State.WAITING, State.PREPARING, State.STARTING, State.STOPPED,
                              State.FATAL, State.BLOCKED}),
    State.FATAL: frozenset({State.WAITING, State.PREPARING, State.STARTING, State.STOPPED,
                            State.BLOCKED}),
}

ACTIVE = frozenset({State.STARTING, State.RUNNING, State.STOPPING})
SETTLED = frozenset({State.STOPPED, State.EXITED, State.FATAL})


class TransitionError(RuntimeError):
    pass


def check_transition(old: State, new: State) -> None:
    if old is new:
        return
    if new not in _ALLOWED[old]:
        raise TransitionError(f"illegal instance transition {old} -> {new}")


class Health(StrEnum):
    NONE = "none"  # no probe declared
    UNKNOWN = "unknown"  # probe declared, no verdict yet
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
