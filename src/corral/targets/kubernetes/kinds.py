"""The kinds corral writes, and their REST paths. A fixed table, not API discovery: ``down``
and pruning touch only these kinds (nothing a user added under the same labels of another
kind), and no discovery round trips or cache files are needed."""

from __future__ import annotations

from typing import NamedTuple


class Kind(NamedTuple):
    api_version: str
    plural: str

    def collection(self, namespace: str) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        return f"{base}/namespaces/{namespace}/{self.plural}"

    def path(self, namespace: str, name: str) -> str:
        return f"{self.collection(namespace)}/{name}"


# in the order ``down`` deletes them: workloads first, what they use after
KINDS: dict[str, Kind] = {
    "CronJob": Kind("batch/v1", "cronjobs"),
    "Job": Kind("batch/v1", "jobs"),
    "Deployment": Kind("apps/v1", "deployments"),
    "Service": Kind("v1", "services"),
    "NetworkPolicy": Kind("networking.k8s.io/v1", "networkpolicies"),
    "ConfigMap": Kind("v1", "configmaps"),
    "Secret": Kind("v1", "secrets"),
    "PersistentVolumeClaim": Kind("v1", "persistentvolumeclaims"),
    "RoleBinding": Kind("rbac.authorization.k8s.io/v1", "rolebindings"),
    "Role": Kind("rbac.authorization.k8s.io/v1", "roles"),
    "ServiceAccount": Kind("v1", "serviceaccounts"),
}
WORKLOADS = ("Deployment", "Job", "CronJob")
