"""The Kubernetes target's parts: readiness verdicts, pod states, the log records of pod
lines, the remembered target, and apply/prune through the official client against the fake
API server of ``tests/support/kube_fake.py`` (kmock, its own process on a real port: no
Kubernetes API server can run here)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.errors import CorralError, UsageError
from corral.targets import where
from corral.targets.kubernetes import apply, logs, status, wait
from corral.targets.kubernetes.cluster import Cluster
from corral.targets.kubernetes.kinds import KINDS
from tests.support.kube import fake_cluster

LABELS = {"app.kubernetes.io/managed-by": "corral", "corral.dev/project": "shop"}


def _deployment(name: str, replicas: int = 1, image: str = "nginx:1") -> dict:
    labels = {**LABELS, "corral.dev/agent": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": name, "image": image}]}}}}


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    with fake_cluster(tmp_path) as (_, config):
        monkeypatch.setenv("KUBECONFIG", str(config))
        yield Cluster()


def test_the_context_gives_the_namespace_and_the_flag_overrides_it(cluster: Cluster) -> None:
    assert (cluster.context, cluster.namespace) == ("fake", "team")
    assert Cluster("gone", "other").namespace == "other"
    assert Cluster("gone").namespace == "default"
    with pytest.raises(UsageError, match=r"no context 'fak' in .*did you mean 'fake'"):
        Cluster("fak")


def test_apply_then_prune_deletes_only_what_this_apply_left_out(cluster: Cluster) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "web-env", "labels": LABELS}, "data": {"A": "1"}}
    first = apply.apply(cluster, [cm, _deployment("web"), _deployment("db")])
    assert first == [("ConfigMap", "web-env"), ("Deployment", "web"), ("Deployment", "db")]
    other = {**_deployment("api"), "metadata": {"name": "api", "labels": {
        **LABELS, "corral.dev/project": "another"}}}
    apply.apply(cluster, [other])
    gone = apply.prune(cluster, "shop", [("ConfigMap", "web-env"), ("Deployment", "web")])
    assert gone == [("Deployment", "db")]
    left = sorted((o["kind"], o["metadata"]["name"]) for o in apply.listed(cluster, "shop"))
    assert left == [("ConfigMap", "web-env"), ("Deployment", "web")]
    assert [o["metadata"]["name"] for o in apply.listed(cluster, "another")] == ["api"]
    assert apply.down(cluster, "shop") == [("Deployment", "web"), ("ConfigMap", "web-env")]
    assert apply.listed(cluster, "shop") == []


def test_claims_and_their_data_stay_unless_volumes_are_asked_for(cluster: Cluster) -> None:
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "shop-data", "labels": LABELS},
           "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}
    apply.apply(cluster, [pvc, _deployment("db")])
    assert apply.prune(cluster, "shop", []) == [("Deployment", "db")]
    assert apply.down(cluster, "shop") == []
    assert apply.down(cluster, "shop", volumes=True) == [("PersistentVolumeClaim", "shop-data")]


def test_an_unknown_kind_is_refused_before_any_call(cluster: Cluster) -> None:
    with pytest.raises(CorralError, match="does not apply objects of kind 'Ingress'"):
        apply.apply(cluster, [{"kind": "Ingress", "metadata": {"name": "x"}}])


def test_wait_goes_in_order_and_names_the_agent_at_the_timeout(cluster: Cluster) -> None:
    apply.apply(cluster, [_deployment("db"), _deployment("web", 2, "x:never-ready")])
    heard: list[str] = []
    with pytest.raises(CorralError, match=r"agents\.web did not get ready within 0s "
                                          r"\(deployment/web: 0/2 available\)"):
        wait.wait(cluster, [("db", "Deployment", "db"), ("web", "Deployment", "web")], 0,
                  lambda agent, at: heard.append(f"{agent} {at}"))
    assert heard == ["db deployment/db: 1/1 available"]
    rows = status.rows(cluster, "shop", 0.0)
    assert {r["state"] for r in rows if r["agent"] == "web"} == {"ImagePullBackOff"}


@pytest.mark.parametrize(("kind", "obj", "expected"), [
    ("Deployment", {"metadata": {"generation": 2}, "spec": {"replicas": 2},
                    "status": {"observedGeneration": 1, "updatedReplicas": 2,
                               "availableReplicas": 2}}, None),  # the old generation's
    ("Deployment", {"metadata": {"generation": 2}, "spec": {"replicas": 2},
                    "status": {"observedGeneration": 2, "updatedReplicas": 2,
                               "availableReplicas": 2}}, True),
    ("Job", {"metadata": {}, "status": {"conditions": [
        {"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}}, False),
    ("Job", {"metadata": {}, "status": {"active": 1}}, None),
    ("CronJob", {"metadata": {}}, True),
])
def test_readiness_verdicts(kind: str, obj: dict, expected: bool | None) -> None:
    assert wait.verdict(kind, obj)[0] is expected


def test_a_pod_state_is_what_holds_its_containers() -> None:
    pod = {"metadata": {}, "status": {"phase": "Running", "containerStatuses": [
        {"state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m"}}}]}}
    assert status.pod_state(pod) == ("CrashLoopBackOff", "back-off 5m")
    assert status.pod_state({"metadata": {"deletionTimestamp": "x"}})[0] == "terminating"
    assert status.pod_state({"metadata": {}, "status": {"phase": "Pending"}}) == ("pending", "")


def test_pod_lines_become_store_records_with_pod_and_node_and_no_repeats() -> None:
    text = ("2026-12-02T14:03:05.123456789Z plain line\n"
            '2026-12-02T14:03:06.000000001Z {"level":"warn","msg":"slow","ms":12}\n'
            "not a stamped line\n")
    data, last = logs.records("web", "web-1", "node-3", text, "")
    recs = [json.loads(line) for line in data.splitlines()]
    assert [r["message"] for r in recs] == ["plain line", "slow"]
    assert recs[1]["level"] == "warn" and recs[1]["ms"] == 12
    assert all(r["pod"] == "web-1" and r["node"] == "node-3" and r["instance"] == "web-1"
               for r in recs)
    assert recs[0]["timestamp"] == "2026-12-02T14:03:05.123457Z"
    assert last == "2026-12-02T14:03:06.000000001Z"
    again, _ = logs.records("web", "web-1", "node-3", text, last)
    assert again == b""  # sinceTime has whole seconds: what came before is dropped


def test_the_remembered_target_and_its_overrides(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    assert where.chosen(None, state) is None
    where.remember(state, "kubernetes", "fake", "team", "shop")
    assert where.chosen(None, state) == {"target": "kubernetes", "context": "fake",
                                         "namespace": "team", "project": "shop"}
    assert where.chosen("local", state) is None
    where.forget(state)
    assert where.chosen("kubernetes", state)["context"] is None


def test_every_kind_the_exporter_writes_has_a_path() -> None:
    assert KINDS["Deployment"].path("ns", "web") == "/apis/apps/v1/namespaces/ns/deployments/web"
    assert KINDS["ConfigMap"].collection("ns") == "/api/v1/namespaces/ns/configmaps"
    from corral.convert.base import ExportOptions
    from corral.convert.export.kubernetes import objects
    from corral.convert.report import Report
    from corral.manifest.loader import load

    manifest = load(str(Path(__file__).parents[2] / "examples" / "quickstart" / "corral.yaml"))
    kinds = {o["kind"] for o in objects(manifest, ExportOptions(), Report("x"))}
    assert kinds and kinds <= set(KINDS)
