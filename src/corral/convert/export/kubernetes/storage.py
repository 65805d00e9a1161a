"""Volumes in the cluster. A named volume (kept in the state dir across restarts) is a
PersistentVolumeClaim, one per name for the fleet, as compose shares one named volume between
its services. A host path is not on the cluster's nodes: by default an ``emptyDir`` stands in
(the pod gets an empty directory there, lost with the pod, and the report says so), because a
``hostPath`` mounts whatever the node happens to hold at that path and needs privileges most
clusters refuse; ``--set host_paths=hostPath`` chooses it for a cluster where that is
wanted (a single-node one)."""

from __future__ import annotations

import os
from typing import Any

from corral.convert.export.kubernetes.config import DATA_DIR
from corral.convert.export.kubernetes.names import dns_label, meta
from corral.convert.export.kubernetes.plan import Obj, Plan


def claim_name(plan: Plan, volume: str) -> str:
    return dns_label(f"{plan.manifest.name}-{volume}")


def volumes(plan: Plan, name: str, claims: dict[str, set[str]]
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes and the container's mounts for the agent's ``volumes:`` and its data
    dir; the named volumes it uses are added to ``claims`` (volume -> agents)."""
    agent = plan.agent(name)
    pod: list[dict[str, Any]] = [{"name": "corral-data", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "corral-data", "mountPath": DATA_DIR}]
    host_path = plan.setting("host_paths", "emptyDir") == "hostPath"
    for n, v in enumerate(agent.volumes):
        vol = f"v{n}"
        path = f"volumes.{v.target}"
        if v.named:
            volume = os.path.basename(v.source)
            claims.setdefault(volume, set()).add(name)
            pod.append({"name": vol, "persistentVolumeClaim": {
                "claimName": claim_name(plan, volume)}})
        elif host_path:
            pod.append({"name": vol, "hostPath": {"path": v.source}})
            plan.report.changed(name, path, f"a hostPath of {v.source} on the node the pod "
                                "runs on (not this host's files)")
        else:
            pod.append({"name": vol, "emptyDir": {}})
            plan.report.dropped(name, path, f"{v.source} is a path on this host, not on the "
                                "cluster's nodes: an empty dir stands in (--set "
                                "host_paths=hostPath mounts the node's path; a named volume "
                                "becomes a PVC)")
        mount: dict[str, Any] = {"name": vol, "mountPath": v.target}
        if v.read_only:
            mount["readOnly"] = True
        mounts.append(mount)
    return pod, mounts


def claims(plan: Plan, used: dict[str, set[str]]) -> list[Obj]:
    size = plan.setting("volume_size", "1Gi")
    out: list[Obj] = []
    for volume, agents in used.items():
        many = len(agents) > 1 or any(plan.agent(a).replicas > 1 for a in agents)
        spec: dict[str, Any] = {"accessModes": ["ReadWriteMany" if many else "ReadWriteOnce"],
                                "resources": {"requests": {"storage": size}}}
        if "storage_class" in plan.settings:
            spec["storageClassName"] = plan.settings["storage_class"]
        for agent in sorted(agents):
            plan.report.changed(agent, f"volumes.{volume}", f"a PersistentVolumeClaim "
                                f"{claim_name(plan, volume)} of {size} "
                                f"({spec['accessModes'][0]}: "
                                + ("shared, so the storage class must offer it)" if many
                                   else "one node at a time)"))
        out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": meta(claim_name(plan, volume), plan.names.fleet_labels(),
                                     plan.namespace), "spec": spec})
    return out
