"""An agent's pod template and its workload object: the image, the command (as ``args``, so
an image's own ENTRYPOINT stays, as at the container level), the environment and secrets,
resources, probes, the stop signal and grace, volumes, init containers and the network
rule; and what of the agent's other fields a pod cannot hold (the report)."""

from __future__ import annotations

import math
from typing import Any

from corral.convert import images
from corral.convert.export.kubernetes import config, network, ordering, probes, storage, workloads
from corral.convert.export.kubernetes.names import is_label, meta
from corral.convert.export.kubernetes.plan import Obj, Plan
from corral.drivers.container.options import container_options

PULL = {"missing": "IfNotPresent", "always": "Always", "never": "Never"}


def _resources(plan: Plan, name: str) -> dict[str, Any]:
    r = plan.agent(name).resources
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if r.cpus is not None:
        limits["cpu"] = f"{max(1, round(r.cpus * 1000))}m"
    if r.memory is not None:
        limits["memory"] = str(r.memory)
    if r.memory_reservation is not None:
        requests["memory"] = str(r.memory_reservation)
    if r.gpus:  # the device plugin's extended resource: whole GPUs, a limit only
        limits["nvidia.com/gpu"] = str(math.ceil(r.gpus))
        if r.gpus != math.ceil(r.gpus):
            plan.report.changed(name, "resources.gpus", f"{r.gpus:g} rounded up to "
                                f"{math.ceil(r.gpus)}: Kubernetes schedules whole GPUs")
    if r.memory_high is not None:
        plan.report.dropped(name, "resources.memory_high", "Kubernetes has no throttle "
                            "threshold below the limit (MemoryQoS is the kubelet's)")
    if r.pids is not None:
        plan.report.dropped(name, "resources.pids", "the pids limit is the kubelet's "
                            "(podPidsLimit), not a pod's")
    out: dict[str, Any] = {}
    if limits:
        out["limits"] = limits
    if requests:
        out["requests"] = requests
    return out


def _stop(plan: Plan, name: str) -> tuple[int, dict[str, Any] | None]:
    stop = plan.agent(name).stop
    grace = math.ceil(stop.timeout)
    if grace != stop.timeout:
        plan.report.changed(name, "stop.timeout", f"{grace}s (whole seconds)")
    if stop.signal in ("SIGTERM", "TERM"):
        return grace, None
    sig = stop.signal.removeprefix("SIG")
    plan.report.changed(name, "stop.signal", f"a preStop hook sends SIG{sig} to PID 1 and "
                        "waits for it to end (needs /bin/sh and kill in the image); "
                        "Kubernetes' SIGTERM follows")
    script = f"kill -{sig} 1; while kill -0 1 2>/dev/null; do sleep 1; done"
    return grace, {"preStop": {"exec": {"command": ["/bin/sh", "-c", script]}}}


def _report_rest(plan: Plan, name: str) -> None:
    agent = plan.agent(name)
    if agent.ready_log_line:
        plan.report.dropped(name, "ready_log_line", "Kubernetes cannot see a log line; give "
                            "it a readiness probe")
    if agent.on.fatal or agent.on.restart or agent.on.oom:
        plan.report.dropped(name, "on", "hooks run on corral's host on its events; the "
                            "cluster's are Events (kubectl get events)")
    n = agent.needs
    if n.gpu:
        plan.report.dropped(name, "needs.gpu", "request the device plugin's resource (e.g. "
                            "nvidia.com/gpu) in resources.limits yourself")
    if n.system_packages or n.os or n.kernel:
        plan.report.dropped(name, "needs", "facts for corral recommend; the image must hold "
                            "what the agent needs")
    if agent.user is not None and not agent.user.isdigit():
        plan.report.dropped(name, "user", f"{agent.user!r}: a pod runs as a uid "
                            "(securityContext.runAsUser), not a name")
    if container_options(agent).engine != "auto":
        plan.report.changed(name, "container.engine", "the cluster's container runtime")
    vm = agent.options.get("vm")
    if vm is not None and (vm.guest is not None or vm.python or vm.boot_timeout != 60.0):
        plan.report.dropped(name, "vm", "the guest, its boot timeout and python root: the "
                            "agent runs in a container (its ports are carried)")
    venv = agent.options.get("venv")
    if venv is not None and getattr(venv, "python", None):
        plan.report.changed(name, "venv.python", f"{venv.python}: the generated image's "
                            "Python is its base's (--set base=IMAGE to choose it)")
    if n.internet_facing and name not in plan.services:
        plan.report.dropped(name, "needs.internet_facing", "it has no port: no Service")
    if agent.options.get("node") is not None:
        plan.report.dropped(name, "node", "the generated image installs no node_modules: "
                            "give the agent a Containerfile of its own")
    for key, value in agent.labels.items():
        if not is_label(key, value):
            plan.report.dropped(name, f"labels.{key}", "not a valid Kubernetes label")


def container(plan: Plan, name: str, env_ref: str, claims: dict[str, set[str]],
              secret_names: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The agent's container and the pod's volumes."""
    agent = plan.agent(name)
    image = images.for_agent(plan.manifest, name, plan.report,
                             base=plan.settings.get("base"),
                             registry=plan.settings.get("registry"))
    if image.built:
        plan.builds.append((name, image.ref, image.context or ""))
        if image.containerfile is not None:
            plan.files[images.generated_path(name)] = image.containerfile
        if "registry" not in plan.settings:
            plan.report.changed(name, "image", f"built as {image.ref}: push it where the "
                                "cluster pulls from (--set registry=HOST/PATH names it)")
    out: dict[str, Any] = {"name": plan.names.of_agent(name), "image": image.ref,
                           "imagePullPolicy": PULL[image.pull_policy],
                           "envFrom": [{"configMapRef": {"name": env_ref}}]}
    if agent.argv:  # none: the image's own command (its ENTRYPOINT and CMD)
        out["args"] = agent.argv
    secret_env, secret_volume = config.secret_refs(plan, name, secret_names)
    if agent.replicas != 1:
        secret_env = [{"name": "CORRAL_INSTANCE", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.name"}}}, *secret_env]
    if secret_env:
        out["env"] = secret_env
    _, found = plan.services.get(name, ("", []))
    if found:
        out["ports"] = [{"name": f"p{p}", "containerPort": p, "protocol": "TCP"}
                        for p in found]
    resources = _resources(plan, name)
    if resources:
        out["resources"] = resources
    for role in ("readiness", "liveness"):
        spec = getattr(agent, role)
        made = probes.probe(name, role, spec, plan.report) if spec is not None else None
        if made is not None:
            out[f"{role}Probe"] = made
    volumes, mounts = storage.volumes(plan, name, claims)
    if secret_volume is not None:
        volumes.append(secret_volume)
        mounts.append({"name": "secrets", "mountPath": config.SECRETS_DIR, "readOnly": True})
    out["volumeMounts"] = mounts
    security: dict[str, Any] = {}
    if agent.user is not None and agent.user.isdigit():
        security["runAsUser"] = int(agent.user)
    if agent.trust == "untrusted":
        security.update(allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"]})
        plan.report.changed(name, "trust", "untrusted: the container drops every capability "
                            "and gains no privileges (corral's sandbox walls are not carried)")
    if security:
        out["securityContext"] = security
    return out, volumes


def workload(plan: Plan, name: str, claims: dict[str, set[str]],
             secret_names: dict[str, str]) -> list[Obj]:
    """The agent's ConfigMap, Service and workload, in apply order."""
    agent = plan.agent(name)
    labels = plan.names.agent_labels(name)
    env = config.environment(plan, name)
    env_map, digest = config.config_map(plan, name, env)
    main, volumes = container(plan, name, env_map["metadata"]["name"], claims, secret_names)
    grace, lifecycle = _stop(plan, name)
    if lifecycle is not None:
        main["lifecycle"] = lifecycle
    pod: dict[str, Any] = {"terminationGracePeriodSeconds": grace}
    extra, pod_labels = network.pod_settings(plan, name)
    pod.update(extra)
    inits = ordering.init_containers(plan, name)
    if inits:
        pod["initContainers"] = inits
    if name in plan.waiters:
        pod["serviceAccountName"] = plan.waiter_account()
    pod["containers"] = [main]
    pod["volumes"] = volumes
    own = {k: v for k, v in agent.labels.items() if is_label(k, v)}
    annotations = {"corral.dev/config-hash": digest}
    if agent.description:
        annotations["corral.dev/description"] = agent.description
    template = {"metadata": {"labels": {**own, **pod_labels, **labels},
                             "annotations": annotations}, "spec": pod}
    _report_rest(plan, name)
    kind = workloads.kind(plan, name)
    obj_name = plan.names.of_agent(name)
    if kind == "Deployment":
        workloads.deployment_restart(plan, name)
        spec: dict[str, Any] = {"replicas": agent.replicas, "selector": {
            "matchLabels": plan.names.selector(name)}, "template": template}
        pod["restartPolicy"] = "Always"
        if any("persistentVolumeClaim" in v for v in volumes):
            # a ReadWriteOnce claim cannot be mounted by the new pod while the old holds it
            spec["strategy"] = {"type": "Recreate"}
        api = "apps/v1"
    elif kind == "Job":
        spec = workloads.job_spec(plan, name, template)
        api = "batch/v1"
    else:
        from corral.convert.export.kubernetes.names import CRONJOB_LIMIT, dns_label

        obj_name = dns_label(obj_name, CRONJOB_LIMIT)
        spec = workloads.cronjob_spec(plan, name, template)
        api = "batch/v1"
    head = {"apiVersion": api, "kind": kind,
            "metadata": meta(obj_name, {**own, **labels}, plan.namespace,
                             {"corral.dev/description": agent.description}
                             if agent.description else None), "spec": spec}
    service = network.service(plan, name)
    return [env_map, *([service] if service else []), head]
