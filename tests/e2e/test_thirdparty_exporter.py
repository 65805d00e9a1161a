"""An exporter from outside corral: a package built in the test (``tests/support/thirdparty``'s
wheel maker) registers a format in the ``corral.exporters`` entry-point group, and ``corral
export`` finds it, runs it, writes its files and shows its report; a plug-in that does not
load is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Project
from tests.support import thirdparty

EXPORTER = '''"""A third-party corral exporter: one line per agent, its name and command."""

from __future__ import annotations

from corral.convert.base import Bundle, ExportOptions
from corral.convert.report import Report


class AgentList:
    name = "agentlist"
    summary = "a list of the agents"

    def export(self, manifest, options: ExportOptions) -> Bundle:
        report = Report("export agentlist")
        lines = []
        for name, agent in manifest.agents.items():
            lines.append(f"{name}\\t{' '.join(agent.command)}")
            if agent.readiness is not None:
                report.dropped(name, "readiness", "a list has no probes")
        return Bundle(report, files={"agents.tsv": "\\n".join(lines) + "\\n"})
'''
ENTRY_POINTS = ("[corral.exporters]\nagentlist = agentlist_exporter:AgentList\n"
                "broken = agentlist_exporter:NoSuchClass\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("agentlist")
    wheel = thirdparty.wheel(root, "corral_agentlist", "0.1",
                             {"agentlist_exporter/__init__.py": EXPORTER}, ENTRY_POINTS)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
                    "--no-deps", "--disable-pip-version-check", "--target", str(root / "site"),
                    str(wheel)], check=True, capture_output=True, timeout=120)
    return root / "site"


def _env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site),
                                                        os.environ.get("PYTHONPATH")]))}


MANIFEST = """\
name: plug
agents:
  web:
    command: python3 -m http.server 8000
    readiness: {tcp: 8000}
  job:
    command: python3 -c "print(1)"
"""


def test_an_installed_exporter_writes_its_files_and_its_report(project: Project,
                                                               site: Path) -> None:
    project.write(MANIFEST)
    out = project.root / "out"
    proc = project.corral("export", "agentlist", "--out", str(out), "--report", "json",
                          env=_env(site))
    assert (out / "agents.tsv").read_text() == ("web\tpython3 -m http.server 8000\n"
                                                "job\tpython3 -c print(1)\n")
    report = json.loads(proc.stdout)
    assert report["losses"] == [{"agent": "web", "field": "readiness", "outcome": "dropped",
                                 "reason": "a list has no probes"}]
    assert report["notes"] == [f"wrote 1 file to {out}"]


def test_an_exporter_that_does_not_load_is_one_line(project: Project, site: Path) -> None:
    project.write(MANIFEST)
    proc = project.corral("export", "broken", check=False, env=_env(site))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "the 'broken' exporter (agentlist_exporter:NoSuchClass) does not load" in proc.stderr
