"""``depends_on`` as init containers, so a pod starts its agent only once its dependencies
are as the condition says. A dependency that is running (started, healthy, log_ready) and has
a Service is waited for on the Service: a Service has endpoints only for Ready pods, so a
connection to it succeeds once a pod passed its readiness probe (or, without one, started); a
small busybox loop tries it. A dependency without a Service (or one the agent's network rule
keeps it from reaching), and a Job that must complete, is waited for through the API, as a
ServiceAccount of the fleet's own that a Role lets read Deployments and Jobs, and nothing
else (``kubectl wait --for=create``, then ``kubectl rollout status``: every replica
available; ``kubectl wait --for=condition=complete``).

The default images, as their own builds make them: ``busybox`` from busybox's defconfig
(docker-library/busybox), which enables ``NC_110_COMPAT`` (``nc -z``) and ``NC_EXTRA``
(``-w``); ``registry.k8s.io/kubectl`` from kubernetes' ``build/server-image/kubectl``:
Debian's base with ``/bin/kubectl`` (the entrypoint, on PATH). ``--set wait_image=`` and
``--set kubectl_image=`` replace them (a mirror); a replacement needs the same programs."""

from __future__ import annotations

from typing import Any

from corral.convert.export.kubernetes import network, workloads
from corral.convert.export.kubernetes.names import meta
from corral.convert.export.kubernetes.plan import KUBECTL_IMAGE, WAIT_IMAGE, Obj, Plan

RUNNING = ("started", "healthy", "log_ready")
_LIMITS = {"limits": {"cpu": "100m", "memory": "64Mi"}}


def init_containers(plan: Plan, name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for dep, how in plan.agent(name).depends_on.items():
        if dep not in plan.manifest.agents:
            continue
        path = f"depends_on.{dep}"
        target = plan.agent(dep)
        kind = workloads.kind(plan, dep)
        dep_name = plan.names.of_agent(dep)
        if how.restart:
            plan.report.dropped(name, f"{path}.restart", "Kubernetes does not restart a pod "
                                "when a dependency restarts")
        if not how.required:
            plan.report.changed(name, f"{path}.required", "the pod waits for it all the "
                                "same (an init container cannot tell a failed optional "
                                "dependency from a slow one)")
        if kind == "CronJob":
            plan.report.dropped(name, path, f"{dep} is a CronJob: no one run to wait for")
            continue
        if how.condition in RUNNING:
            _running_caveats(plan, name, path, how.condition, target)
            if dep in plan.services and kind == "Deployment" and network.reaches(plan, name,
                                                                                 dep):
                svc, ports = plan.services[dep]
                port = ports[0]
                script = (f"until nc -z -w 2 {svc} {port}; do echo waiting for {svc}:{port}; "
                          "sleep 2; done")
                out.append(_container(f"wait-{dep_name}", plan.setting("wait_image",
                                                                       WAIT_IMAGE),
                                      ["/bin/sh", "-c", script]))
                continue
            if kind == "Deployment":
                out += _through_api(plan, name, f"deployment/{dep_name}",
                                    ["rollout", "status"], "0s")
                continue
            plan.report.changed(name, f"{path}.condition", f"{how.condition}: {dep} is a Job, "
                                "waited for until it completes")
        elif kind != "Job":
            plan.report.dropped(name, path, f"condition {how.condition}, but {dep} is a "
                                "Deployment, which never completes")
            continue
        elif how.condition == "completed":
            plan.report.changed(name, f"{path}.condition", "completed: waits for the Job to "
                                "succeed (a failed Job keeps it waiting)")
        out += _through_api(plan, name, f"job/{dep_name}",
                            ["wait", "--for=condition=complete"], "-1s")
    return out


def _through_api(plan: Plan, name: str, target: str, verb: list[str],
                 timeout: str) -> list[dict[str, Any]]:
    """Two kubectl steps: until the object exists (``apply`` may create it after this pod: a
    wait on a missing object fails at once, and a failed init container fails a Job's pod),
    then until it is as the condition says. ``--timeout``: -1s is a week, 0s is never for
    ``rollout status``."""
    plan.waiters.add(name)
    image = plan.setting("kubectl_image", KUBECTL_IMAGE)
    dep = target.partition("/")[2]
    return [_container(f"find-{dep}", image,
                       ["kubectl", "wait", "--for=create", target, "--timeout=-1s"]),
            _container(f"wait-{dep}", image, ["kubectl", *verb, target, f"--timeout={timeout}"])]


def _running_caveats(plan: Plan, name: str, path: str, condition: str, target: Any) -> None:
    if condition == "healthy" and target.readiness is None:
        plan.report.changed(name, f"{path}.condition", "healthy, but the dependency has no "
                            "readiness probe: Kubernetes' Ready is its start")
    if condition == "log_ready":
        plan.report.changed(name, f"{path}.condition", "log_ready: waits for the "
                            "dependency's readiness (Kubernetes cannot see a log line)")


def _container(name: str, image: str, command: list[str]) -> dict[str, Any]:
    return {"name": name[:63], "image": image, "command": command, "resources": _LIMITS,
            "securityContext": {"allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}}}


def access(plan: Plan) -> list[Obj]:
    """The waiters' ServiceAccount, its Role (read Deployments and Jobs) and their binding."""
    if not plan.waiters:
        return []
    account = plan.waiter_account()
    labels = plan.names.fleet_labels()
    subject: dict[str, Any] = {"kind": "ServiceAccount", "name": account}
    if plan.namespace:
        subject["namespace"] = plan.namespace
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": meta(account, labels, plan.namespace)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": meta(account, labels, plan.namespace),
         "rules": [{"apiGroups": ["apps"], "resources": ["deployments", "replicasets"],
                    "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list",
                                                                             "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": meta(account, labels, plan.namespace),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": account},
         "subjects": [subject]},
    ]
