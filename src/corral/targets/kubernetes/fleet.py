"""What the CLI asks of the Kubernetes target: ``up`` (export, apply, prune, remember,
wait), ``down``, the ``ps`` rows and the logs fetch, each from the target recorded in the
state dir (``targets.where``). Output goes through ``say`` so the CLI owns the terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral.targets import where
from corral.targets.kubernetes.cluster import Cluster

if TYPE_CHECKING:
    from corral.manifest.spec import Manifest

Say = Callable[[str], None]


def project_label(manifest: Manifest) -> str:
    from corral.convert.export.kubernetes.names import label_value

    return label_value(manifest.name)


def up(manifest: Manifest, *, context: str | None, namespace: str | None, force: bool,
       wait_timeout: float | None, say: Say) -> int:
    """Apply the fleet; with ``wait_timeout`` wait for each agent in dependency order."""
    from corral.convert.base import ExportOptions
    from corral.convert.export.kubernetes import objects
    from corral.convert.export.kubernetes.names import label_value
    from corral.convert.report import Report
    from corral.targets.kubernetes import apply

    cluster = Cluster(context, namespace)
    report = Report("up --target kubernetes")
    objs = objects(manifest, ExportOptions(namespace=cluster.namespace), report)
    if report.losses:
        sys.stderr.write(report.as_text())
    label = project_label(manifest)
    applied = apply.apply(cluster, objs, force=force)
    where.remember(manifest.state_dir, "kubernetes", cluster.context, cluster.namespace, label)
    gone = apply.prune(cluster, label, applied)
    say(f"applied {len(applied)} objects to namespace {cluster.namespace!r} of context "
        f"{cluster.context!r}")
    for kind, name in gone:
        say(f"{kind.lower()}/{name}: pruned")
    if wait_timeout is None:
        return 0
    from corral.targets.kubernetes.kinds import WORKLOADS
    from corral.targets.kubernetes.wait import wait

    agents = {label_value(a): a for a in manifest.agents}
    order = [(agents.get(o["metadata"]["labels"].get(apply.AGENT, ""), o["metadata"]["name"]),
              o["kind"], o["metadata"]["name"]) for o in objs if o["kind"] in WORKLOADS]
    wait(cluster, order, wait_timeout, lambda agent, at: say(f"{agent}: ready ({at})"))
    return 0


def connect(target: dict[str, Any]) -> Cluster:
    return Cluster(target.get("context"), target.get("namespace"))


def down(state_dir: str, target: dict[str, Any], label: str, say: Say, *,
         volumes: bool = False) -> int:
    from corral.targets.kubernetes import apply

    cluster = connect(target)
    gone = apply.down(cluster, label, volumes=volumes)
    for kind, name in gone:
        say(f"{kind.lower()}/{name}: deleted")
    say(f"deleted {len(gone)} object{'s' if len(gone) != 1 else ''} from namespace "
        f"{cluster.namespace!r} of context {cluster.context!r}")
    kept = [o for o in apply.listed(cluster, label) if o["kind"] == "PersistentVolumeClaim"]
    if kept:
        say(f"kept {len(kept)} PersistentVolumeClaim(s) and their data "
            "(down --volumes deletes them)")
    where.forget(state_dir)
    return 0


def rows(target: dict[str, Any], label: str) -> list[dict[str, Any]]:
    import time

    from corral.targets.kubernetes import status

    return status.rows(connect(target), label, time.time())


def fetch_logs(target: dict[str, Any], label: str, state_dir: str, log_dir: str,
               agents: list[str] | None) -> int:
    from corral.targets.kubernetes import logs

    return logs.fetch(connect(target), label, state_dir, log_dir, agents)
