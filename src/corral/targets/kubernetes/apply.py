"""Server-side apply of the exporter's objects, then the prune: every object of corral's kinds
that carries the project's labels (``app.kubernetes.io/managed-by=corral`` and
``corral.dev/project=PROJECT``) and that this apply did not include is deleted, so an agent
removed from the manifest goes with its objects. ``down`` deletes them all. Objects of other
kinds, or without both labels, are never touched."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corral.errors import CorralError
from corral.targets.kubernetes.cluster import APPLY, MANAGER
from corral.targets.kubernetes.kinds import KINDS

if TYPE_CHECKING:
    from corral.targets.kubernetes.cluster import Cluster

MANAGED_BY = "app.kubernetes.io/managed-by"
PROJECT = "corral.dev/project"
AGENT = "corral.dev/agent"
Key = tuple[str, str]  # (kind, name)


def selector(project_label: str) -> str:
    return f"{MANAGED_BY}=corral,{PROJECT}={project_label}"


def apply(cluster: Cluster, objects: list[dict[str, Any]], *, force: bool = False
          ) -> list[Key]:
    """Each object PATCHed with ``application/apply-patch+yaml`` as field manager ``corral``
    (``force``: take over fields another manager owns; else their conflict is an error), in
    the exporter's order, in the cluster's namespace."""
    applied: list[Key] = []
    for obj in objects:
        kind = KINDS.get(obj.get("kind", ""))
        if kind is None:
            raise CorralError(f"corral does not apply objects of kind {obj.get('kind')!r}",
                              "this is a bug of the exporter: report it")
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": cluster.namespace}}
        name = obj["metadata"]["name"]
        query: list[tuple[str, Any]] = [("fieldManager", MANAGER)]
        if force:
            query.append(("force", "true"))
        cluster.call("PATCH", kind.path(cluster.namespace, name), query, obj, APPLY)
        applied.append((obj["kind"], name))
    return applied


def listed(cluster: Cluster, project_label: str) -> list[dict[str, Any]]:
    """The project's objects in the cluster, of every kind corral writes."""
    found: list[dict[str, Any]] = []
    for kind_name, kind in KINDS.items():
        answer = cluster.call("GET", kind.collection(cluster.namespace),
                              [("labelSelector", selector(project_label))])
        for item in answer.get("items") or []:
            found.append({**item, "kind": kind_name})
    return found


def delete(cluster: Cluster, kind_name: str, name: str) -> None:
    """Deleted with its dependents in the background (a Deployment's ReplicaSets and pods,
    a Job's pods), as kubectl does."""
    from corral.errors import CorralError as Error

    body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
    try:
        cluster.call("DELETE", KINDS[kind_name].path(cluster.namespace, name), None, body)
    except Error as exc:
        if ": 404 " not in str(exc):  # gone meanwhile
            raise


def prune(cluster: Cluster, project_label: str, keep: list[Key], *,
          volumes: bool = False) -> list[Key]:
    """The project's objects not in ``keep`` deleted; what was deleted. PVCs hold data: they
    stay unless ``volumes`` (``down --volumes``, as local named volumes do)."""
    kept = set(keep)
    gone: list[Key] = []
    for item in listed(cluster, project_label):
        key = (item["kind"], item["metadata"]["name"])
        if key not in kept and (volumes or key[0] != "PersistentVolumeClaim"):
            delete(cluster, *key)
            gone.append(key)
    return gone


def down(cluster: Cluster, project_label: str, *, volumes: bool = False) -> list[Key]:
    return prune(cluster, project_label, [], volumes=volumes)
