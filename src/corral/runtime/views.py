"""What an instance looks like from outside its runner: the frozen ``Snapshot`` the runner
replaces on each change (stored, awaited by dependants), and the form the API shows it in
(``corral ps``, ``/v1/status``, the state events).

``public`` lives below the API because the supervisor publishes it on every change; the API
only passes it on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from corral.drivers.base import Handle
from corral.manifest.spec import Agent
from corral.runtime.state import Health, State

_ON_THE_WAY = frozenset({State.CREATED, State.WAITING, State.PREPARING, State.STARTING,
                         State.STOPPING})

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.manifest.spec import Agent


@dataclass(frozen=True, slots=True)
class Snapshot:
    name: str
    agent: str
    index: int
    state: State
    health: Health
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    exit_code: int | None = None
    exit_signal: int | None = None
    oom_killed: bool = False
    reason: str = ""
    spec_hash: str = ""
    log_ready: bool = False
    handle: Handle | None = None
    runs_begun: int = 0  # in this generation (a re-adopted run counts)
    # a start was asked of the instance at rest: its last result is stale until the new run
    # begins, and meets no dependant's condition meanwhile
    rerun: bool = False


def public(s: Snapshot, now: float | None = None) -> dict[str, Any]:
    """The snapshot as the API shows it."""
    import time

    now = time.time() if now is None else now
    running = s.state is State.RUNNING and s.started_at is not None
    return {
        "name": s.name, "agent": s.agent, "index": s.index, "state": s.state.value,
        "health": s.health.value, "pid": s.pid, "started_at": s.started_at,
        "uptime": round(now - s.started_at, 3) if running and s.started_at else None,
        "restarts": s.restarts, "exit_code": s.exit_code, "exit_signal": s.exit_signal,
        "oom_killed": s.oom_killed, "reason": s.reason,
        "limits": s.handle.data.get("limits") if s.handle is not None else None,
        # a cluster's node the instance runs on (``placement``): its IP and id
        "node_ip": s.handle.data.get("node_ip") if s.handle is not None else None,
        "node": s.handle.data.get("node") if s.handle is not None else None,
    }


def placement(spec: Agent) -> dict[str, Any]:
    """The agent's columns of ``corral ps``: its isolation level, and its ports: what its
    level block publishes (``HOST->INSIDE``), else the ports its probes check."""
    block = spec.options.get(spec.isolation)
    ports = []
    for mapping in getattr(block, "ports", None) or ():
        host, _, inside = str(mapping).partition(":")
        ports.append(f"{host}->{inside or host}")
    if not ports:
        for probe in (spec.readiness, spec.liveness):
            check = probe and (probe.http or probe.tcp)
            if check and str(check.port) not in ports:
                ports.append(str(check.port))
    return {"isolation": spec.isolation, "ports": ports}


def readiness(s: Snapshot, spec: Agent) -> str:
    """How far a start (or restart) has come, for ``--wait``: "ready" (completed with 0 for
    a one-shot, a ``compute`` agent; else healthy when it has a readiness probe, or its
    ready line came when it names one, else running), "failed" (ended otherwise, crashed
    into a backoff, fatal, blocked), or "pending" (on its way; the backoff a restart passes
    through included)."""
    if s.rerun or s.state in _ON_THE_WAY:
        return "pending"
    if s.state is State.RUNNING:
        if spec.class_ == "compute":  # runs to completion: its result is its exit
            return "pending"
        if spec.readiness is not None:
            return "ready" if s.health is Health.HEALTHY else "pending"
        if spec.ready_log_line:
            return "ready" if s.log_ready else "pending"
        return "ready"
    if s.state is State.EXITED:
        return "ready" if s.exit_code == 0 else "failed"
    if s.state is State.BACKOFF and s.reason == "restarting on request":
        return "pending"
    return "failed"
