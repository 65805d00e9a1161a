"""``corral export kubernetes`` through the CLI, on the quickstart and on a fleet that uses
every field the exporter maps; each output checked by the real validators
(``kubernetes-validate --strict`` for three Kubernetes versions, ``kubectl kustomize``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.e2e.conftest import CORRAL
from tests.support import rich_fleet
from tests.support.validate_kubernetes import check_kubernetes

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart"


def _corral(root: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([*CORRAL, "-f", str(root / "corral.yaml"), *args], cwd=root,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def test_the_quickstart_exports_to_a_valid_directory_and_kustomization(tmp_path: Path) -> None:
    root = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, root, ignore=shutil.ignore_patterns(".corral"))
    run = _corral(root, "export", "kubernetes", "--out", "k8s", "--report", "json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["kind"] == "export kubernetes"
    fields = {(x["agent"], x["field"]) for x in report["losses"]}
    assert ("report", "schedule.every") in fields  # every 15s: cron says minutes
    assert ("monitor", "depends_on.cache.restart") in fields
    assert any(n.startswith("wrote ") for n in report["notes"])
    files = check_kubernetes(str(root / "k8s"))
    kinds = {d["kind"]: d for f in files for d in yaml.safe_load_all(Path(f).read_text())}
    assert {"Deployment", "Job", "CronJob", "Service", "ConfigMap"} <= set(kinds)
    assert (root / "k8s" / "build" / "worker" / "Containerfile").is_file()
    again = _corral(root, "export", "kubernetes", "--out", "k8s")  # its own dir: replaced
    assert again.returncode == 0, again.stderr
    assert "export kubernetes:" in again.stderr.splitlines()[0]


def test_a_rich_fleet_exports_valid_objects_with_a_text_report(tmp_path: Path) -> None:
    rich_fleet.write(tmp_path)
    run = _corral(tmp_path, "export", "kubernetes", "--out", "out", "--namespace", "prod",
                  "--set", "registry=reg.example/team")
    assert run.returncode == 0, run.stderr
    text = run.stderr
    assert "    dropped  resources.pids:" in text and "  my_web:" in text
    check_kubernetes(str(tmp_path / "out"))
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "kubectl create secret generic rich-db-password --namespace prod" in readme
    assert "podman push reg.example/team/corral-rich-migrate:latest" in readme


def test_included_secrets_warn_and_are_written(tmp_path: Path) -> None:
    rich_fleet.write(tmp_path)
    run = _corral(tmp_path, "export", "kubernetes", "--out", "-", "--include-secrets",
                  env={"RICH_DB_PASSWORD": "hunter2"})
    assert run.returncode == 0, run.stderr
    assert "WARN: --include-secrets" in run.stderr
    # --out - shows every file after a "# file: PATH" line; the YAML ones are the objects
    parts = run.stdout.split("# file: ")[1:]
    docs = [d for part in parts if part.split("\n", 1)[0].endswith(".yaml")
            for d in yaml.safe_load_all(part.split("\n", 1)[1]) if d]
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    assert secrets["rich-db-password"]["stringData"] == {"value": "hunter2"}


def test_bad_input_is_one_line_and_a_failure(tmp_path: Path) -> None:
    rich_fleet.write(tmp_path)
    run = _corral(tmp_path, "export", "kubernetes", "--out", "-", "--set", "host_path=x")
    assert run.returncode != 0
    assert len(run.stderr.strip().splitlines()) <= 2, run.stderr
    assert "not a kubernetes setting" in run.stderr and "Traceback" not in run.stderr
    run = _corral(tmp_path, "export", "kubernetes", "--out", "-", "--include-secrets")
    assert run.returncode != 0 and "RICH_DB_PASSWORD" in run.stderr
    assert "Traceback" not in run.stderr
