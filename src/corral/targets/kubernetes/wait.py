"""Readiness in dependency order, as ``up --wait`` means it locally: an agent is reported
ready only after what it depends on is (a Deployment available with all its replicas
updated, a Job complete; a CronJob once applied: it runs on its schedule). The pods' init
containers hold the dependents in the cluster itself; this is what the user is told."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral.errors import CorralError
from corral.targets.kubernetes.kinds import KINDS

if TYPE_CHECKING:
    from corral.targets.kubernetes.cluster import Cluster

POLL = 1.0


def verdict(kind: str, obj: dict[str, Any]) -> tuple[bool | None, str]:
    """(True ready / False failed / None not yet, what it is at)."""
    status = obj.get("status") or {}
    if kind == "Deployment":
        want = (obj.get("spec") or {}).get("replicas", 1)
        seen = status.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)
        ok = [status.get(k, 0) >= want for k in ("updatedReplicas", "availableReplicas")]
        at = f"{status.get('availableReplicas', 0)}/{want} available"
        return (True if seen and all(ok) else None), at
    if kind == "Job":
        for cond in status.get("conditions") or []:
            if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
                done = cond["type"] == "Complete"
                return done, "complete" if done else f"failed: {cond.get('message', '')}"
        return None, f"{status.get('succeeded', 0)} succeeded, {status.get('active', 0)} active"
    return True, "scheduled"


def wait(cluster: Cluster, order: list[tuple[str, str, str]], timeout: float,
         on_ready: Callable[[str, str], None]) -> None:
    """``order``: (agent, kind, name) of each workload, dependencies first. ``on_ready``
    hears each agent once ready; a failed Job, or the timeout, is a one-line error naming
    the agent."""
    deadline = time.monotonic() + timeout
    for agent, kind, name in order:
        while True:
            obj = cluster.call("GET", KINDS[kind].path(cluster.namespace, name))
            ready, at = verdict(kind, obj)
            if ready:
                on_ready(agent, f"{kind.lower()}/{name}: {at}")
                break
            if ready is False:
                raise CorralError(f"agents.{agent}: {kind.lower()}/{name} {at}",
                                  f"see 'corral logs {agent}' and 'corral ps'")
            if time.monotonic() >= deadline:
                raise CorralError(f"agents.{agent} did not get ready within {timeout:g}s "
                                  f"({kind.lower()}/{name}: {at})",
                                  f"see 'corral ps' and 'corral logs {agent}', or raise "
                                  "--wait-timeout")
            time.sleep(POLL)
