"""The issue's bar for conversion: the quickstart, both reference fleets of ``examples/`` and
ten real public compose files (``tests/data/compose``, sources in its SOURCES.md) import with a
report and export to all four formats, and each format's own validator accepts every output
(``docker-compose config``, ``kubernetes-validate --strict`` and ``kubectl kustomize``,
``systemd-analyze verify``, ``make -n``: the ``check_<format>`` helpers of tests/support).

Everything runs through the CLI as a user would, in a copy of the fleet under tmp_path. The
validators are imported when a test needs them, so a format whose exporter or helper is
missing fails its own tests here (the bar is not met), never the others'."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import CORRAL

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "compose"
FORMATS = ("compose", "kubernetes", "systemd", "make")
FLEETS = ("quickstart", "datascience", "scraping")
# each vendored project and its compose file (the one a user would pass to `docker compose -f`)
COMPOSE = {
    "voting-app": "docker-compose.yml",
    "atsea-stack": "docker-stack.yml",
    "netbox": "docker-compose.yml",
    "n8n-queue": "docker-compose.yml",
    "plausible": "docker-compose.yml",
    "zabbix": "docker-compose_v3_alpine_pgsql_latest.yaml",
    "nginx-golang-postgres": "compose.yaml",
    "elk": "compose.yaml",
    "minecraft": "compose.yaml",
    "react-java-mysql": "compose.yaml",
}


def corral(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CORRAL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (f"corral {' '.join(args)} exited {proc.returncode}:\n"
                                  f"{proc.stdout}\n{proc.stderr}")
    return proc


def report_of(proc: subprocess.CompletedProcess[str], kind: str) -> dict[str, Any]:
    """The JSON report on stdout, parsed and checked for its shape."""
    report = json.loads(proc.stdout)
    assert report["kind"] == kind
    for loss in report["losses"]:
        assert set(loss) == {"agent", "field", "outcome", "reason"}, loss
        assert loss["outcome"] in ("dropped", "changed") and loss["reason"] and loss["field"]
    return dict(report)


def agents_of(manifest: Path) -> set[str]:
    """The agents of a manifest, as corral's loader reads it (``corral config`` passes too)."""
    from corral.manifest.loader import load

    corral(manifest.parent, "-f", str(manifest), "config")
    return set(load(str(manifest)).agents)


def validate(fmt: str, directory: Path) -> None:
    module = importlib.import_module(f"tests.support.validate_{fmt}")
    getattr(module, f"check_{fmt}")(directory)


def export_all(manifest: Path, out: Path) -> None:
    """Export ``manifest`` to every format and validate each; each report names only the
    fleet's agents, and the four together name some (a real fleet never carries everything
    into every format: a process agent becomes a container, a probe kind another's)."""
    agents = agents_of(manifest)
    named: set[str] = set()
    failures = []
    for fmt in FORMATS:
        directory = out / fmt
        try:
            proc = corral(manifest.parent, "-f", str(manifest), "export", fmt, "--out",
                          str(directory), "--report", "json")
            report = report_of(proc, f"export {fmt}")
            strangers = {x["agent"] for x in report["losses"]} - agents - {None}
            assert not strangers, f"export {fmt} reports agents the fleet has not: {strangers}"
            named |= {x["agent"] for x in report["losses"]} - {None}
            assert any(n.startswith("wrote ") for n in report["notes"]), report["notes"]
            validate(fmt, directory)
        except (AssertionError, ImportError, json.JSONDecodeError) as exc:
            failures.append(f"{fmt}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert named, f"no report named an agent of {sorted(agents)}"


@pytest.mark.parametrize("fleet", FLEETS)
def test_example_fleet_exports_everywhere(fleet: str, tmp_path: Path) -> None:
    project = tmp_path / fleet
    shutil.copytree(REPO / "examples" / fleet, project)
    export_all(project / "corral.yaml", tmp_path / "export")


@pytest.mark.parametrize("name", sorted(COMPOSE))
def test_public_compose_file_imports_and_exports_everywhere(name: str, tmp_path: Path) -> None:
    project = tmp_path / name
    shutil.copytree(DATA / name, project)
    source = project / COMPOSE[name]
    manifest = project / "corral.yaml"
    proc = corral(project, "import", "compose", str(source), "--output", str(manifest),
                  "--report", "json")
    report = report_of(proc, "import compose")
    agents = agents_of(manifest)
    assert agents, f"{name}: the import made no agents"
    # a service left out (a profile not asked for) is named in the report though not written
    services = set(yaml.safe_load(source.read_text())["services"])
    strangers = {x["agent"] for x in report["losses"]} - agents - services - {None}
    assert not strangers, f"the import reports agents that are not services: {strangers}"
    export_all(manifest, tmp_path / "export")
