"""``corral export kubernetes``: the fleet as Kubernetes objects (Deployments, Jobs, CronJobs,
Services, ConfigMaps, Secrets or references to them, PVCs, NetworkPolicies, the RBAC of the
init containers that wait on dependencies), as a plain directory of YAML and as a
kustomization; ``objects`` gives them in apply order to ``corral up --target kubernetes``.
Every field the objects cannot carry exactly is in the report. See docs/export.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from corral.convert.base import Bundle, ExportOptions
from corral.convert.export.kubernetes.plan import Obj, Plan
from corral.convert.report import Report

if TYPE_CHECKING:
    from corral.manifest.spec import Manifest


def _order(manifest: Manifest) -> list[str]:
    """The agents, each after what it depends on (the manifest's order otherwise)."""
    done: dict[str, None] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done or name in path or name not in manifest.agents:
            return
        for dep in manifest.agents[name].depends_on:
            visit(dep, (*path, name))
        done[name] = None

    for name in manifest.agents:
        visit(name, ())
    return list(done)


def plan_objects(plan: Plan) -> tuple[list[Obj], dict[str, list[Obj]]]:
    """The fleet's objects (RBAC, Secrets, PVCs, policies) and each agent's, in apply order."""
    from corral.convert.export.kubernetes import config, network, ordering, pods, storage

    m = plan.manifest
    _fleet_report(plan)
    network.plan_services(plan)
    names = config.secret_names(plan)
    wanted = config.used(plan)
    claims: dict[str, set[str]] = {}
    agents = {name: pods.workload(plan, name, claims, names) for name in _order(m)}
    fleet = [*ordering.access(plan), *config.secrets(plan, names, wanted),
             *storage.claims(plan, claims), *network.policies(plan)]
    if wanted and not plan.options.include_secrets:
        plan.report.notes.append(f"the pods refer to {len(wanted)} Secret(s) you create: "
                                 "see README.md (or export with --include-secrets)")
    return fleet, agents


def objects(manifest: Manifest, options: ExportOptions, report: Report) -> list[Obj]:
    """Every object, in apply order (namespace-less unless ``options.namespace``)."""
    fleet, agents = plan_objects(Plan.of(manifest, options, report))
    return [*fleet, *(obj for objs in agents.values() for obj in objs)]


def _fleet_report(plan: Plan) -> None:
    from corral.manifest.spec import LogsConfig

    m = plan.manifest
    if m.metrics.port is not None:
        plan.report.dropped(None, "metrics", "corral's daemon and its metrics do not run in "
                            "the cluster (kube-state-metrics shows the workloads)")
    if m.dashboard.port is not None:
        plan.report.dropped(None, "dashboard", "corral's daemon and its dashboard do not run "
                            "in the cluster")
    if m.logs != LogsConfig():
        plan.report.dropped(None, "logs", "the kubelet keeps and rotates container logs "
                            "(containerLogMaxSize on the node)")
    if m.logs.forward:
        plan.report.dropped(None, "logs.forward", "corral's forwarder does not run in the "
                            "cluster: a node log agent (an OpenTelemetry Collector, Fluent Bit) "
                            "ships the pods' logs")


class KubernetesExporter:
    name: ClassVar[str] = "kubernetes"
    summary: ClassVar[str] = ("Deployments, Jobs, CronJobs, Services, ConfigMaps, PVCs and "
                              "NetworkPolicies, as a directory and a kustomization")

    def export(self, manifest: Manifest, options: ExportOptions) -> Bundle:
        from corral.convert.export.kubernetes import bundle

        report = Report("export kubernetes")
        plan = Plan.of(manifest, options, report)
        fleet, agents = plan_objects(plan)
        return bundle.make(plan, fleet, agents)
