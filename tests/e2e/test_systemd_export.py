"""``corral export systemd`` through the CLI: the quickstart and a rich fleet, each output
accepted by ``systemd-analyze verify``, the report as JSON. Running the units for real needs
a systemd running as PID 1, which this container has not (``systemctl`` reports "System has
not been booted with systemd"): the test says so and skips that part."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.validate_systemd import check_systemd
from tests.unit.test_export_systemd import RICH

ROOT = Path(__file__).resolve().parents[2]
CORRAL = [sys.executable, "-m", "corral.cli.main"]


def _export(manifest: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CORRAL, "-f", str(manifest), "export", "systemd", "--out",
                           str(out), *extra], capture_output=True, text=True, timeout=120,
                          check=False, cwd=manifest.parent)


def test_the_quickstart_exports_to_units_systemd_verifies(tmp_path: Path) -> None:
    done = _export(ROOT / "examples/quickstart/corral.yaml", tmp_path / "out",
                   "--report", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["kind"] == "export systemd"
    fields = {(x["agent"], x["field"]) for x in report["losses"]}
    assert ("cache", "liveness") in fields and ("worker", "isolation") in fields
    check_systemd(str(tmp_path / "out"))
    units = sorted(os.listdir(tmp_path / "out/units"))
    assert "quickstart.target" in units and "quickstart-report@.timer" in units
    assert os.access(tmp_path / "out/install.sh", os.X_OK)
    seed = (tmp_path / "out/units/quickstart-seed@.service").read_text()
    assert "RemainAfterExit=yes" in seed


def test_a_rich_fleet_exports_through_the_cli_and_bad_input_is_one_line(
        tmp_path: Path) -> None:
    (tmp_path / "corral.yaml").write_text(RICH)
    (tmp_path / "token.txt").write_text("t\n")
    (tmp_path / "db.txt").write_text("p\n")
    done = _export(tmp_path / "corral.yaml", tmp_path / "out", "--set", "systemd-version=256")
    assert done.returncode == 0, done.stderr
    assert "secrets.apikey" in done.stderr and "systemd 256" in done.stderr
    said = check_systemd(str(tmp_path / "out"),
                         newer_keys=("RestartSteps", "RestartMaxDelaySec"))
    if "252" in subprocess.run(["systemctl", "--version"], capture_output=True, text=True,
                               check=False, timeout=30).stdout:
        assert "RestartSteps" in said  # this host's 252 does not know them: a 256's do
    bad = _export(tmp_path / "corral.yaml", tmp_path / "out2", "--set", "systemd-version=new")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) <= 2 and "systemd-version" in bad.stderr


def test_running_the_units_needs_a_booted_systemd() -> None:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        pytest.skip("no systemctl here")
    state = subprocess.run([systemctl, "is-system-running"], capture_output=True, text=True,
                           timeout=30, check=False)
    if not os.path.isdir("/run/systemd/system"):
        said = state.stdout.strip() or state.stderr.strip()
        pytest.skip(f"systemd is not PID 1 in this container ({said}): the units are "
                    "verified, not run")
    pytest.skip("a booted systemd: run install.sh by hand; the tests do not touch the host's "
                "units")
