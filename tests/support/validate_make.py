"""``check_make(directory)``: an exported Makefile as make reads it: ``make -n`` (print, run
nothing) of ``up``, ``down``, ``ps``, ``logs`` and every per-agent target must succeed. For the
tests of any exporter whose output is a Makefile (the make export, and the bars' fleets)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

AGENT_TARGETS = ("up", "down", "logs", "restart")


def agents_of(directory: Path) -> list[str]:
    """The agents the Makefile has targets for (its ``up-AGENT:`` rules)."""
    text = (directory / "Makefile").read_text()
    return re.findall(r"^up-([a-z0-9][a-z0-9_-]*):", text, flags=re.M)


def check_make(directory: Path | str) -> list[str]:
    """Dry-run every target of the Makefile in ``directory``; the agents it found. A target
    make refuses fails the calling test with make's words."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    directory = Path(directory)
    agents = agents_of(directory)
    targets = ["help", "up", "down", "ps", "logs"]
    targets += [f"{t}-{a}" for a in agents for t in AGENT_TARGETS]
    for target in targets:
        proc = subprocess.run(["make", "-n", "-C", str(directory), target],
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"make -n {target} failed:\n{proc.stdout}{proc.stderr}"
    return agents
