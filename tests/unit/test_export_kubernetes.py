"""The Kubernetes exporter's objects, feature by feature, on a fleet that uses every field it
maps (``tests/support/rich_fleet.py``), and what its report says it could not carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.convert.base import ExportOptions
from corral.convert.export.kubernetes import KubernetesExporter, objects
from corral.convert.report import Report
from corral.errors import CorralError, UsageError
from corral.manifest.loader import load, load_text
from corral.manifest.spec import Manifest
from tests.support import rich_fleet
from tests.support.validate_kubernetes import check_kubernetes

Obj = dict[str, Any]


@pytest.fixture
def rich(tmp_path: Path) -> Manifest:
    return load(rich_fleet.write(tmp_path))


def _objects(manifest: Manifest, **options: Any) -> tuple[list[Obj], Report]:
    report = Report("export kubernetes")
    return objects(manifest, ExportOptions(**options), report), report


def _find(objs: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {[o['metadata']['name'] for o in objs]}"
    return found[0]


def _pod(workload: Obj) -> Obj:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod: Obj = spec["template"]["spec"]
    return pod


def _losses(report: Report, agent: str | None) -> dict[str, str]:
    return {x.field: x.outcome for x in report.for_agent(agent)}


def test_every_object_carries_the_labels_the_target_prunes_by(rich: Manifest) -> None:
    objs, _ = _objects(rich)
    for obj in objs:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "corral"
        assert labels["app.kubernetes.io/part-of"] == "rich"
        assert labels["corral.dev/project"] == "rich"
        assert "namespace" not in obj["metadata"]
    web = _find(objs, "Deployment", "my-web")
    assert web["metadata"]["labels"]["corral.dev/agent"] == "my_web"
    template = web["spec"]["template"]["metadata"]["labels"]
    assert template["corral.dev/agent"] == "my_web" and template["tier"] == "front"
    assert web["spec"]["selector"]["matchLabels"] == {"corral.dev/project": "rich",
                                                      "corral.dev/agent": "my_web"}
    objs, _ = _objects(rich, namespace="prod")
    assert {o["metadata"].get("namespace") for o in objs} == {"prod"}


def test_the_workload_follows_how_the_runtime_runs_the_agent(rich: Manifest) -> None:
    objs, report = _objects(rich)
    kinds = {o["metadata"]["labels"].get("corral.dev/agent"): o["kind"] for o in objs
             if o["kind"] in ("Deployment", "Job", "CronJob")}
    assert kinds == {"db": "Deployment", "migrate": "Job", "my_web": "Deployment",
                     "idle": "Deployment", "nightly": "CronJob", "hourly": "CronJob",
                     "lonely": "Deployment", "pair-a": "Deployment", "pair-b": "Deployment"}
    migrate = _find(objs, "Job", "migrate")
    assert migrate["spec"]["backoffLimit"] == 4
    assert _pod(migrate)["restartPolicy"] == "OnFailure"
    assert _losses(report, "migrate")["restart.window"] == "changed"
    assert _find(objs, "Deployment", "my-web")["spec"]["replicas"] == 3


def test_schedules_become_cronjobs_with_their_differences_reported(rich: Manifest) -> None:
    objs, report = _objects(rich)
    nightly = _find(objs, "CronJob", "nightly")["spec"]
    assert nightly["schedule"] == "0 3 * * *" and nightly["timeZone"] == "Europe/Paris"
    assert nightly["concurrencyPolicy"] == "Forbid"
    assert nightly["startingDeadlineSeconds"] == 60  # no catch-up: a late run is skipped
    assert _losses(report, "nightly")["schedule.overlap"] == "changed"
    hourly = _find(objs, "CronJob", "hourly")["spec"]
    assert hourly["schedule"] == "0 */2 * * *" and "startingDeadlineSeconds" not in hourly
    assert _pod(_find(objs, "CronJob", "hourly"))["restartPolicy"] == "Never"


def test_every_that_cron_cannot_say_is_the_nearest_step_and_reported(tmp_path: Path) -> None:
    m = load_text("name: t\nagents:\n  r:\n    class: compute\n    command: \"true\"\n"
                  "    schedule: {every: 7m, jitter: 3s, run_on_start: true}\n",
                  project_dir=tmp_path)
    objs, report = _objects(m)
    assert _find(objs, "CronJob", "r")["spec"]["schedule"] == "*/6 * * * *"
    losses = _losses(report, "r")
    assert losses["schedule.every"] == "changed"
    assert losses["schedule.jitter"] == "dropped"
    assert losses["schedule.run_on_start"] == "dropped"


def test_probes_keep_every_threshold(rich: Manifest) -> None:
    objs, report = _objects(rich)
    db = _pod(_find(objs, "Deployment", "db"))["containers"][0]
    assert db["readinessProbe"] == {"tcpSocket": {"port": 5432}, "initialDelaySeconds": 1,
                                    "periodSeconds": 2, "timeoutSeconds": 2,
                                    "successThreshold": 2, "failureThreshold": 5}
    assert db["livenessProbe"]["exec"] == {"command": ["pg_isready", "-q"]}
    assert _losses(report, "db")["readiness.timeout"] == "changed"  # 1.5 s: whole seconds
    web = _pod(_find(objs, "Deployment", "my-web"))["containers"][0]
    assert web["livenessProbe"]["httpGet"] == {"path": "/health", "port": 8000,
                                               "scheme": "HTTP"}
    beat = web["readinessProbe"]["exec"]["command"]
    assert beat[:2] == ["/bin/sh", "-c"] and "stat -c %Y beat" in beat[2] and "-le 20" in beat[2]
    pair_b = _pod(_find(objs, "Deployment", "pair-b"))["containers"][0]
    assert "livenessProbe" not in pair_b
    assert _losses(report, "pair-b")["liveness.silence"] == "dropped"


def test_resources_stop_and_trust(rich: Manifest) -> None:
    objs, report = _objects(rich)
    pod = _pod(_find(objs, "Deployment", "db"))
    main = pod["containers"][0]
    assert main["resources"] == {"limits": {"cpu": "1500m", "memory": str(512 * 2**20)},
                                 "requests": {"memory": str(256 * 2**20)}}
    assert _losses(report, "db")["resources.pids"] == "dropped"
    assert pod["terminationGracePeriodSeconds"] == 30
    assert "kill -INT 1" in main["lifecycle"]["preStop"]["exec"]["command"][2]
    idle = _pod(_find(objs, "Deployment", "idle"))["containers"][0]
    assert idle["securityContext"] == {"allowPrivilegeEscalation": False,
                                       "capabilities": {"drop": ["ALL"]}}


def test_services_and_the_peers_addresses_at_them(rich: Manifest) -> None:
    objs, report = _objects(rich)
    db = _find(objs, "Service", "db")
    assert db["spec"]["ports"] == [{"name": "p5432", "port": 5432, "targetPort": 5432,
                                    "protocol": "TCP"}]
    assert db["spec"]["selector"] == {"corral.dev/project": "rich", "corral.dev/agent": "db"}
    assert _losses(report, "db")["container.ports"] == "changed"  # 15432 is not published
    env = _find(objs, "ConfigMap", "my-web-env")["data"]
    assert env["CORRAL_ADDR_DB"] == "db:5432" and env["CORRAL_HOST_DB"] == "db"
    assert env["GREETING"] == "hello" and env["FROM_FILE"] == "yes"  # env and env file
    assert "CORRAL_ADDR_PAIR_A" not in env  # a loopback group admits only its own
    assert not any(k in env for k in ("PATH", "HOME", "CORRAL_RUN_DIR"))
    pair_b = _find(objs, "ConfigMap", "pair-b-env")["data"]
    assert pair_b["CORRAL_ADDR_PAIR_A"] == "pair-a:9000"
    assert "CORRAL_ADDR_DB" not in pair_b
    lonely = _find(objs, "ConfigMap", "lonely-env")["data"]
    assert not any(k.startswith("CORRAL_ADDR_") for k in lonely)


def test_network_rules_are_policies(rich: Manifest) -> None:
    objs, _ = _objects(rich)
    deny = _find(objs, "NetworkPolicy", "lonely-deny-all")["spec"]
    assert deny == {"podSelector": {"matchLabels": {"corral.dev/project": "rich",
                                                    "corral.dev/agent": "lonely"}},
                    "policyTypes": ["Ingress", "Egress"]}
    duo = _find(objs, "NetworkPolicy", "rich-loopback-duo")["spec"]
    members = {"corral.dev/project": "rich", "corral.dev/loopback": "duo"}
    assert duo["podSelector"]["matchLabels"] == members
    assert duo["ingress"] == [{"from": [{"podSelector": {"matchLabels": members}}]}]
    assert duo["egress"][0] == {"to": [{"podSelector": {"matchLabels": members}}]}
    pod_labels = _find(objs, "Deployment", "pair-a")["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["corral.dev/loopback"] == "duo"


def test_secrets_are_references_unless_included(rich: Manifest,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    objs, report = _objects(rich)
    assert not [o for o in objs if o["kind"] == "Secret"]
    main = _pod(_find(objs, "Deployment", "db"))["containers"][0]
    assert main["env"] == [{"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "rich-db-password", "key": "value"}}}]
    volume = next(v for v in _pod(_find(objs, "Deployment", "db"))["volumes"]
                  if v["name"] == "secrets")
    assert volume["projected"]["sources"] == [{"secret": {"name": "rich-api-key", "items": [
        {"key": "value", "path": "api.key"}]}}]
    assert _losses(report, None)["secrets.unused"] == "dropped"
    bundle = KubernetesExporter().export(rich, ExportOptions())
    readme = bundle.files["README.md"]
    assert 'kubectl create secret generic rich-db-password --from-literal=value=' \
           '"$RICH_DB_PASSWORD"' in readme
    assert "s3cret" not in "".join(bundle.files.values())
    with pytest.raises(CorralError, match="RICH_DB_PASSWORD is not set"):
        _objects(rich, include_secrets=True)
    monkeypatch.setenv("RICH_DB_PASSWORD", "pw")
    objs, _ = _objects(rich, include_secrets=True)
    assert _find(objs, "Secret", "rich-db-password")["stringData"] == {"value": "pw"}
    assert _find(objs, "Secret", "rich-api-key")["stringData"] == {"value": "s3cret-key"}


def test_volumes_named_and_host_paths(rich: Manifest) -> None:
    objs, report = _objects(rich)
    claim = _find(objs, "PersistentVolumeClaim", "rich-dbdata")["spec"]
    assert claim == {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}
    volumes = {v["name"]: v for v in _pod(_find(objs, "Deployment", "db"))["volumes"]}
    assert volumes["v0"] == {"name": "v0", "persistentVolumeClaim": {
        "claimName": "rich-dbdata"}}
    assert volumes["v1"] == {"name": "v1", "emptyDir": {}}
    assert _find(objs, "Deployment", "db")["spec"]["strategy"] == {"type": "Recreate"}
    assert _losses(report, "db")["volumes./etc/app"] == "dropped"
    objs, _ = _objects(rich, settings={"host_paths": "hostPath", "volume_size": "5Gi"})
    volumes = {v["name"]: v for v in _pod(_find(objs, "Deployment", "db"))["volumes"]}
    assert volumes["v1"]["hostPath"]["path"].endswith("/conf")


def test_dependencies_are_init_containers(rich: Manifest) -> None:
    objs, report = _objects(rich)
    # started and completed_successfully are carried exactly: nothing to report
    assert not [f for f in _losses(report, "my_web") if f.startswith("depends_on")]
    inits = {c["name"]: c for c in _pod(_find(objs, "Deployment", "my-web"))["initContainers"]}
    # first until the object exists (a wait on a missing one fails at once), then its state
    assert list(inits)[:2] == ["find-migrate", "wait-migrate"]
    assert inits["find-migrate"]["command"] == ["kubectl", "wait", "--for=create",
                                                "job/migrate", "--timeout=-1s"]
    assert inits["wait-migrate"]["command"] == ["kubectl", "wait", "--for=condition=complete",
                                                "job/migrate", "--timeout=-1s"]
    assert inits["find-idle"]["command"] == ["kubectl", "wait", "--for=create",
                                             "deployment/idle", "--timeout=-1s"]
    assert inits["wait-idle"]["command"] == ["kubectl", "rollout", "status",
                                             "deployment/idle", "--timeout=0s"]
    migrate = _pod(_find(objs, "Job", "migrate"))["initContainers"][0]
    assert migrate["command"][2].startswith("until nc -z -w 2 db 5432;")
    assert _pod(_find(objs, "Deployment", "my-web"))["serviceAccountName"] == "rich-corral-wait"
    role = _find(objs, "Role", "rich-corral-wait")
    assert {r["apiGroups"][0] for r in role["rules"]} == {"apps", "batch"}
    assert all(r["verbs"] == ["get", "list", "watch"] for r in role["rules"])
    binding = _find(objs, "RoleBinding", "rich-corral-wait")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rich-corral-wait"}]
    kinds = [o["kind"] for o in objs]
    assert kinds.index("Deployment") > kinds.index("RoleBinding")
    order = [o["metadata"]["name"] for o in objs if o["kind"] in ("Deployment", "Job")]
    assert order.index("db") < order.index("migrate") < order.index("my-web")


def test_names_are_dns_labels_and_the_mapping_is_reported(rich: Manifest) -> None:
    _, report = _objects(rich)
    assert _losses(report, "my_web")["name"] == "changed"


def test_settings_are_checked_and_builds_named_for_the_registry(rich: Manifest) -> None:
    with pytest.raises(UsageError, match="not a kubernetes setting"):
        _objects(rich, settings={"registri": "x"})
    with pytest.raises(UsageError, match="not one of"):
        _objects(rich, settings={"host_paths": "nfs"})
    objs, _ = _objects(rich, settings={"registry": "reg.example/team"})
    image = _pod(_find(objs, "Job", "migrate"))["containers"][0]["image"]
    assert image == "reg.example/team/corral-rich-migrate:latest"
    bundle = KubernetesExporter().export(rich, ExportOptions())
    assert "build/migrate/Containerfile" in bundle.files
    assert "podman push localhost/corral-rich-migrate:latest" in bundle.files["README.md"]


def test_the_bundle_is_valid_for_several_versions_and_a_kustomization(
        rich: Manifest, tmp_path: Path) -> None:
    from corral.convert import output

    bundle = KubernetesExporter().export(rich, ExportOptions(namespace="prod"))
    kustomization = yaml.safe_load(bundle.files["kustomization.yaml"])
    assert kustomization["namespace"] == "prod"
    assert kustomization["resources"][0] == "manifests/00-fleet.yaml"
    assert all(r in bundle.files for r in kustomization["resources"])
    docs = [d for path in kustomization["resources"]
            for d in yaml.safe_load_all(bundle.files[path])]
    assert docs == objects(rich, ExportOptions(namespace="prod"), Report("again"))
    out = tmp_path / "out"
    output.write(bundle, str(out), kind="export kubernetes")
    assert len(check_kubernetes(str(out))) == len(kustomization["resources"])


SMALL = """\
name: small
agents:
  1st_one:
    command: sleep infinity
    restart: "no"
  thinker:
    class: ai
    command: sleep infinity
  host-box:
    isolation: sandbox
    network: host
    command: sleep infinity
    volumes: ["shared:/data"]
  api:
    command: python3 -m http.server 8080
    port: 8080
    volumes: ["shared:/data"]
  front:
    isolation: container
    container: {image: docker.io/library/nginx:1.27}
    command: nginx -g "daemon off;"
    depends_on: {api: {condition: started}}
"""


def test_one_shots_names_host_network_and_shared_volumes(tmp_path: Path) -> None:
    m = load_text(SMALL, project_dir=tmp_path)
    assert m.agents["front"].network == "host"  # the loader moved it beside the api
    objs, report = _objects(m)
    job = _find(objs, "Job", "a-1st-one")  # restart no: it runs once
    assert job["metadata"]["labels"]["corral.dev/agent"] == "1st_one"
    assert _pod(job)["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    thinker = _find(objs, "Deployment", "thinker")  # on-failure, long-running: a Deployment
    assert thinker["spec"]["replicas"] == 1
    assert _losses(report, "thinker")["restart.policy"] == "changed"
    box = _pod(_find(objs, "Deployment", "host-box"))
    assert box["hostNetwork"] is True and box["dnsPolicy"] == "ClusterFirstWithHostNet"
    front = _pod(_find(objs, "Deployment", "front"))
    assert "hostNetwork" not in front  # in the cluster the api is a pod too
    assert front["containers"][0]["image"] == "docker.io/library/nginx:1.27"
    assert front["initContainers"][0]["command"][2].startswith("until nc -z -w 2 api 8080;")
    env = _find(objs, "ConfigMap", "front-env")["data"]
    assert env["CORRAL_ADDR_API"] == "api:8080"
    claim = _find(objs, "PersistentVolumeClaim", "small-shared")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # two agents share it


def test_a_small_fleet_is_valid_too(tmp_path: Path) -> None:
    from corral.convert import output

    m = load_text(SMALL, project_dir=tmp_path)
    bundle = KubernetesExporter().export(m, ExportOptions(settings={"kustomize": "false"}))
    assert "kustomization.yaml" not in bundle.files
    output.write(bundle, str(tmp_path / "out"), kind="export kubernetes")
    check_kubernetes(str(tmp_path / "out"), versions=("1.28.0",))


def test_a_pod_closed_by_its_network_rule_waits_through_the_api(tmp_path: Path) -> None:
    m = load_text("name: shut\nagents:\n  srv:\n    command: python3 -m http.server 80\n"
                  "    port: 80\n  box:\n    isolation: sandbox\n    command: sleep 1d\n"
                  "    depends_on: {srv: {condition: started}}\n", project_dir=tmp_path)
    objs, report = _objects(m)
    wait = _pod(_find(objs, "Deployment", "box"))["initContainers"][1]
    assert wait["command"] == ["kubectl", "rollout", "status", "deployment/srv",
                               "--timeout=0s"]  # nc could not pass its deny-all policy
    egress = _find(objs, "NetworkPolicy", "box-deny-all")["spec"]["egress"]
    assert [p["port"] for rule in egress for p in rule["ports"]] == [53, 53, 443, 6443]
    assert "ingress" not in _find(objs, "NetworkPolicy", "box-deny-all")["spec"]
    assert any("API server" in x.reason for x in report.for_agent("box"))


def test_an_agent_without_a_command_runs_its_images_own(tmp_path: Path) -> None:
    """No ``args``: the image's ENTRYPOINT and CMD run, as at the container level."""
    m = load_text("name: img\nagents:\n  cache: {isolation: container, container: {image: "
                  "redis:7}}\n", project_dir=str(tmp_path))
    objs, _ = _objects(m)
    (container,) = _pod(_find(objs, "Deployment", "cache"))["containers"]
    assert container["image"] == "redis:7" and "args" not in container


def test_gpus_become_the_device_plugin_s_whole_gpus(tmp_path: Path) -> None:
    """A placed agent's ``resources.gpus`` (the same manifest a Ray cluster ran) is the
    ``nvidia.com/gpu`` limit, rounded up to whole GPUs, which the report says."""
    m = load_text("name: g\nagents:\n  train:\n    command: python train.py\n"
                  "    placement: ray\n    resources: {gpus: 1.5, cpus: 2}\n"
                  "  one:\n    command: python one.py\n    placement: ray\n"
                  "    resources: {gpus: 1}\n", project_dir=tmp_path)
    objs, report = _objects(m)
    train = _pod(_find(objs, "Deployment", "train"))["containers"][0]
    assert train["resources"] == {"limits": {"cpu": "2000m", "nvidia.com/gpu": "2"}}
    assert _losses(report, "train")["resources.gpus"] == "changed"
    one = _pod(_find(objs, "Deployment", "one"))["containers"][0]
    assert one["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert "resources.gpus" not in _losses(report, "one")
    from corral.convert import output

    bundle = KubernetesExporter().export(m, ExportOptions(settings={"kustomize": "false"}))
    output.write(bundle, str(tmp_path / "out"), kind="export kubernetes")
    check_kubernetes(str(tmp_path / "out"), versions=("1.28.0",))  # the schema takes it
