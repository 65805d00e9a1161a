"""``corral ps`` against a cluster: a row per pod of the project (state, ready containers,
restarts, node, uptime), and a row for each workload that has no pod (a CronJob between
runs, a Deployment scaled to zero)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from corral.targets.kubernetes.apply import AGENT, listed, selector

if TYPE_CHECKING:
    from corral.targets.kubernetes.cluster import Cluster


def _since(stamp: str | None, now: float) -> float | None:
    if not stamp:
        return None
    return max(0.0, now - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


def pod_state(pod: dict[str, Any]) -> tuple[str, str]:
    """(state, reason): the phase, or what holds a container (CrashLoopBackOff,
    ImagePullBackOff...) as kubectl shows it; Terminating while being deleted."""
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp"):
        return "terminating", ""
    for c in [*(status.get("initContainerStatuses") or []),
              *(status.get("containerStatuses") or [])]:
        waiting = (c.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "PodInitializing"):
            return waiting["reason"], waiting.get("message", "")
    return (status.get("phase") or "Unknown").lower(), status.get("reason") or ""


def rows(cluster: Cluster, project_label: str, now: float) -> list[dict[str, Any]]:
    pods = cluster.call("GET", f"/api/v1/namespaces/{cluster.namespace}/pods",
                        [("labelSelector", selector(project_label))]).get("items") or []
    out: list[dict[str, Any]] = []
    with_pods: set[str] = set()
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        agent = labels.get(AGENT, "")
        with_pods.add(agent)
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        state, reason = pod_state(pod)
        out.append({
            "name": pod["metadata"]["name"], "agent": agent, "kind": "Pod", "state": state,
            "ready": f"{sum(1 for c in statuses if c.get('ready'))}/"
                     f"{len((pod.get('spec') or {}).get('containers') or []) or len(statuses)}",
            "restarts": sum(c.get("restartCount", 0) for c in statuses),
            "node": (pod.get("spec") or {}).get("nodeName") or "-",
            "uptime": _since((pod.get("status") or {}).get("startTime"), now),
            "reason": reason, "namespace": cluster.namespace})
    for obj in listed(cluster, project_label):
        agent = (obj["metadata"].get("labels") or {}).get(AGENT)
        if obj["kind"] in ("Deployment", "Job", "CronJob") and agent not in with_pods:
            out.append({"name": f"{obj['kind'].lower()}/{obj['metadata']['name']}",
                        "agent": agent, "kind": obj["kind"], "state": "no pods",
                        "ready": "-", "restarts": 0, "node": "-", "uptime": None,
                        "reason": "", "namespace": cluster.namespace})
    return sorted(out, key=lambda r: (r["agent"] or "", r["name"]))
