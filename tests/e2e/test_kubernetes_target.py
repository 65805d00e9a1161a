"""``corral up --target kubernetes`` and ``ps``/``logs``/``down`` after it, through the real
CLI. No Kubernetes API server can run on these machines: the cluster is kmock's emulator
extended in ``tests/support/kube_fake.py`` (server-side apply with field managers and
conflicts, label selectors, pods and their logs, a toy controller), served on a real TCP port
by its own process, so the official client makes the same HTTP calls it makes to a cluster."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Project
from tests.support.kube import fake_cluster

pytestmark = pytest.mark.e2e

FLEET = """\
name: shop
agents:
  db:
    isolation: container
    container: {image: "postgres:16"}
    command: ["postgres"]
  web:
    isolation: container
    container: {image: "nginx:1"}
    command: ["nginx", "-g", "daemon off;"]
    replicas: 2
    depends_on: [db]
  migrate:
    isolation: container
    container: {image: "alpine:3"}
    command: ["echo", "migrated"]
    restart: "no"
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with fake_cluster(tmp_path) as (port, config):
        yield port, {"KUBECONFIG": str(config)}


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
        return json.loads(r.read())


def _names(port: int, plural: str, api: str = "/apis/apps/v1") -> list[str]:
    items = _get(port, f"{api}/namespaces/team/{plural}")["items"]
    return sorted(i["metadata"]["name"] for i in items)


def test_up_waits_in_dependency_order_and_ps_logs_down_follow_it_there(
        project: Project, cluster: tuple[int, dict[str, str]]) -> None:
    port, env = cluster
    project.write(FLEET)
    up = project.corral("up", "--target", "kubernetes", env=env)
    lines = up.stdout.splitlines()
    assert lines[0] == "applied 9 objects to namespace 'team' of context 'fake'"
    ready = [line.split(":")[0] for line in lines if ": ready" in line]
    assert ready.index("db") < ready.index("web") and "migrate" in ready
    assert "changed  replicas" in up.stderr  # the exporter's report is shown
    assert _names(port, "deployments") == ["db", "web"]
    assert _names(port, "jobs", "/apis/batch/v1") == ["migrate"]
    managed = _get(port, "/apis/apps/v1/namespaces/team/deployments/web")["metadata"]
    assert managed["labels"]["corral.dev/project"] == "shop"
    assert [m["manager"] for m in managed["managedFields"]] == ["corral"]

    # no flag: ps, logs and down go where up went
    rows = json.loads(project.corral("ps", "--json", env=env).stdout)
    web = [r for r in rows if r["agent"] == "web"]
    assert len(web) == 2 and {r["node"] for r in web} == {"node-1", "node-2"}
    assert all(r["state"] == "running" and r["ready"] == "1/1" for r in web)
    table = project.corral("ps", env=env).stdout.splitlines()
    assert table[0].split() == ["NAME", "AGENT", "STATE", "READY", "RESTARTS", "NODE",
                                "UPTIME", "REASON"]
    pod = web[0]["name"]
    urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{port}/fake/log/team/{pod}", data=b"ERROR disk full",
        method="POST")).close()
    records = [json.loads(line) for line in
               project.corral("logs", "web", "--json", env=env).stdout.splitlines()]
    assert {r["pod"] for r in records} == {r["name"] for r in web}
    assert all(r["agent"] == "web" and r["node"].startswith("node-") for r in records)
    errors = project.corral("logs", "--level", "error", "--json", env=env).stdout
    assert [json.loads(x)["message"] for x in errors.splitlines()] == ["ERROR disk full"]
    # a second fetch stores nothing twice
    again = project.corral("logs", "web", "--json", env=env).stdout.splitlines()
    assert len(again) == len(records)
    stored = (project.root / ".corral" / "logs" / "web.log").read_text().splitlines()
    assert len(stored) == len(records)

    down = project.corral("down", env=env)
    assert "deleted 9 objects from namespace 'team'" in down.stdout
    assert _names(port, "deployments") == [] and _get(port, "/api/v1/namespaces/team/pods"
                                                      )["items"] == []
    assert not (project.root / ".corral" / "target.json").exists()


def test_an_agent_removed_from_the_manifest_is_pruned_and_other_objects_are_kept(
        project: Project, cluster: tuple[int, dict[str, str]]) -> None:
    port, env = cluster
    project.write(FLEET)
    project.corral("up", "--target", "kubernetes", "-d", env=env)
    # an object of the user's own in the namespace, without corral's labels
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "theirs", "labels": {"corral.dev/project": "shop"}},
                       "data": {"a": "b"}}).encode()
    urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/namespaces/team/configmaps/theirs?fieldManager=kubectl",
        data=body, method="PATCH", headers={"Content-Type": "application/apply-patch+yaml"}
    )).close()
    project.write(FLEET.split("  migrate:")[0])
    up = project.corral("up", "-d", env=env)  # remembered: no --target
    assert "job/migrate: pruned" in up.stdout and "configmap/migrate-env: pruned" in up.stdout
    assert _names(port, "jobs", "/apis/batch/v1") == []
    assert "theirs" in _names(port, "configmaps", "/api/v1")
    project.corral("down", env=env)
    assert _names(port, "configmaps", "/api/v1") == ["theirs"]


def test_a_field_of_another_manager_is_a_conflict_until_forced(
        project: Project, cluster: tuple[int, dict[str, str]]) -> None:
    port, env = cluster
    project.write(FLEET)
    project.corral("up", "--target", "kubernetes", "-d", env=env)
    urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{port}/apis/apps/v1/namespaces/team/deployments/web"
        "?fieldManager=kubectl-scale", data=b'{"spec": {"replicas": 5}}', method="PATCH",
        headers={"Content-Type": "application/merge-patch+json"})).close()
    refused = project.corral("up", "-d", env=env, check=False)
    assert refused.returncode == 1
    err = refused.stderr.strip().splitlines()[-1]
    assert 'conflict with "kubectl-scale": .spec.replicas' in err
    assert "--force-conflicts" in err and "Traceback" not in refused.stderr
    project.corral("up", "-d", "--force-conflicts", env=env)
    assert _get(port, "/apis/apps/v1/namespaces/team/deployments/web")["spec"]["replicas"] == 2


def test_an_agent_that_does_not_get_ready_is_named_at_the_timeout(
        project: Project, cluster: tuple[int, dict[str, str]]) -> None:
    _, env = cluster
    project.write(FLEET.replace("nginx:1", "nginx:never-ready"))
    up = project.corral("up", "--target", "kubernetes", "--wait", "--wait-timeout", "2",
                        env=env, check=False)
    assert up.returncode == 1
    assert "db: ready" in up.stdout
    last = up.stderr.strip().splitlines()[-1]
    assert last.startswith("corral: agents.web did not get ready within 2s "
                           "(deployment/web: 0/2 available)")
    rows = json.loads(project.corral("ps", "--json", "web", env=env).stdout)
    assert {r["state"] for r in rows} == {"ImagePullBackOff"}
    # --status takes a pod's states, in any case (not only the local ones)
    stuck = json.loads(project.corral("ps", "--json", "--status", "imagepullbackoff",
                                      env=env).stdout)
    assert {r["agent"] for r in stuck} == {"web"} and len(stuck) == len(rows)


def test_target_local_overrides_the_remembered_cluster(
        project: Project, cluster: tuple[int, dict[str, str]]) -> None:
    _, env = cluster
    project.write(FLEET)
    project.corral("up", "--target", "kubernetes", "-d", env=env)
    local = project.corral("ps", "--target", "local", env=env, check=False)
    assert local.returncode == 3 and "daemon" in local.stderr  # the local daemon: not running
    assert project.corral("ps", "--json", env=env).stdout.startswith("[{")


@pytest.mark.parametrize(("args", "config", "expected"), [
    ([], "missing", "no kubeconfig at "),
    (["--context", "fakee"], "ok", "no context 'fakee' in "),
    (["--context", "gone"], "ok", "the API server of context 'gone' (http://127.0.0.1:9) "
                                  "does not answer"),
    (["--context", "forbidden"], "ok", "the API server refused PATCH"),
])
def test_cluster_problems_are_one_line(project: Project, cluster: tuple[int, dict[str, str]],
                                       tmp_path: Path, args: list[str], config: str,
                                       expected: str) -> None:
    _, env = cluster
    if config == "missing":
        env = {"KUBECONFIG": str(tmp_path / "nowhere"), "HOME": str(tmp_path)}
    project.write(FLEET)
    up = project.corral("up", "--target", "kubernetes", "-d", *args, env=env, check=False)
    assert up.returncode in (1, 2)
    lines = up.stderr.strip().splitlines()
    assert lines[-1].startswith(f"corral: {expected}"), up.stderr
    assert "Traceback" not in up.stderr
    assert not (project.root / ".corral" / "target.json").exists()  # nothing was applied


def test_logs_follow_shows_a_pod_line_written_after_it_started(
        project: Project, cluster: tuple[int, dict[str, str]]) -> None:
    import os
    import signal
    import subprocess

    from tests.e2e.conftest import CORRAL

    port, env = cluster
    project.write(FLEET)
    project.corral("up", "--target", "kubernetes", "-d", env=env)
    pod = json.loads(project.corral("ps", "--json", "db", env=env).stdout)[0]["name"]
    follower = subprocess.Popen([*CORRAL, "-f", str(project.manifest), "logs", "-f", "db"],
                                cwd=project.root, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    try:
        assert follower.stdout is not None
        assert "started on node-1" in follower.stdout.readline()  # the history first
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/fake/log/team/{pod}", data=b"checkpoint done",
            method="POST")).close()
        line = follower.stdout.readline()
        assert line.split("|", 1)[1].strip().startswith("checkpoint done")
        assert f"pod={pod}" in line and "node=node-1" in line
    finally:
        os.kill(follower.pid, signal.SIGTERM)
        follower.wait(timeout=30)
        if follower.stdout is not None:
            follower.stdout.close()
