"""Agents find each other at every level, and switching an agent's level keeps what it was:
the addresses corral injects (``CORRAL_ADDR_*``), the names that resolve inside sandboxes and
containers, and a sandbox around a venv agent keeping its venv."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.drivers.host.bwrap import find_bwrap
from tests.e2e.conftest import Project
from tests.support.thirdparty import wheel

needs_bwrap = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap (bwrap) is not "
                                 "installed: apt-get install bubblewrap (scripts/install.sh "
                                 "--test does)")


@needs_bwrap
def test_a_sandbox_around_a_venv_agent_keeps_its_venv(project: Project, tmp_path: Path) -> None:
    """The agent was ``isolation: venv`` with a requirements.txt naming a local wheel; one
    word moves it to ``sandbox`` and it still imports the package (no ``venv:`` block)."""
    built = wheel(tmp_path, "tinyword", "1.0", {"tinyword.py": "WORD = 'from-the-wheel'\n"})
    project.file("app/requirements.txt", f"tinyword @ {built.as_uri()}\n")
    project.file("app/main.py", "import tinyword\nprint(tinyword.WORD)\n")
    project.write("""
        name: boxvenv
        agents:
          app:
            isolation: sandbox
            workdir: app
            restart: "no"
            command: python main.py
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: r["app.1"]["state"] in ("exited", "fatal"), timeout=120,
                            what="app to exit")
    messages = [r["message"] for r in project.records("app")]
    assert rows["app.1"]["exit_code"] == 0, messages
    assert "from-the-wheel" in messages
