"""``corral boot``: the systemd unit it writes passes ``systemd-analyze verify``, and where
systemd is not PID 1 the ``@reboot`` crontab entry is written, brings the fleet up when run,
and is removed alone."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import CORRAL, Project

SYSTEMD_PID1 = os.path.isdir("/run/systemd/system")


def _crontab(*args: str, text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["crontab", *args], input=text, capture_output=True, text=True,
                          timeout=30)


@pytest.fixture
def user_crontab() -> Iterator[str]:
    """The user's crontab with one entry of its own, restored afterwards."""
    if SYSTEMD_PID1:
        pytest.skip("systemd is PID 1 here: boot enable installs a unit, not a crontab entry")
    if shutil.which("crontab") is None:
        pytest.skip("no crontab (scripts/install.sh --test installs Debian's cron)")
    before = _crontab("-l")
    original = before.stdout if before.returncode == 0 else None
    other = "# someone else's\n@reboot true corral-boot-test-keep-me\n"
    assert _crontab("-", text=(original or "") + other).returncode == 0
    try:
        yield other
    finally:
        if original is None:
            _crontab("-r")
        else:
            _crontab("-", text=original)


def _verify(unit: Path, *, user: bool, runtime: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    return subprocess.run(["systemd-analyze", "verify", *(["--user"] if user else []),
                           str(unit)], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("scope", ["system", "user"])
def test_boot_unit_passes_systemd_analyze_verify(project: Project, tmp_path: Path,
                                                 scope: str) -> None:
    if shutil.which("podman") is None and shutil.which("docker") is None:
        pytest.skip("no container engine: the unit's engine ordering needs one")
    project.write("""
        name: bootunit
        agents:
          web: {command: [python3, -m, http.server, "18731"]}
          cache: {isolation: container, command: [sleep, infinity]}
    """)
    text = project.corral("boot", "unit", f"--{scope}").stdout
    unit = tmp_path / "units" / "corral-bootunit.service"
    unit.parent.mkdir()
    unit.write_text(text)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    verified = _verify(unit, user=scope == "user", runtime=runtime)
    assert verified.returncode == 0, verified.stderr
    lines = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert "network-online.target" in lines["After"].split()
    assert "network-online.target" in lines["Wants"].split()
    engine_units = {"podman.socket", "docker.service"} & set(lines["After"].split())
    assert engine_units, lines["After"]  # the fleet has a container agent
    assert lines["ExecStart"].endswith(f"-f {project.manifest} up -d")
    # a broken unit is what verify refuses (so its pass above means something)
    unit.write_text(text.replace(f"WorkingDirectory={project.root}", "WorkingDirectory=here"))
    assert _verify(unit, user=scope == "user", runtime=runtime).returncode != 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_boot_unit_of_a_project_at_an_odd_path_passes_verify(tmp_path: Path) -> None:
    """Spaces and a '%' in the project's path: quoted and escaped as systemd reads them."""
    root = tmp_path / "my fleet 100%"
    root.mkdir()
    manifest = root / "corral.yaml"
    manifest.write_text('name: odd\nagents:\n  a: {command: [sleep, "1"]}\n')
    made = subprocess.run([*CORRAL, "-f", str(manifest), "boot", "unit"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    unit = tmp_path / "corral-odd.service"
    unit.write_text(made.stdout)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    verified = _verify(unit, user=False, runtime=runtime)
    assert verified.returncode == 0, verified.stderr
    # cron reads '%' as a line break: enable refuses it in one line rather than mangle it
    if not SYSTEMD_PID1 and shutil.which("crontab") is not None:
        refused = subprocess.run([*CORRAL, "-f", str(manifest), "boot", "enable"],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "cron reads '%'" in refused.stderr


def test_boot_unit_orders_no_engine_without_container_agents(project: Project) -> None:
    project.write("""
        name: bootplain
        agents:
          web: {command: [python3, -m, http.server, "18732"]}
    """)
    after = [ln for ln in project.corral("boot", "unit").stdout.splitlines()
             if ln.startswith("After=")]
    assert after == ["After=network-online.target"]


def test_boot_cron_fallback_for_real(project: Project, user_crontab: str) -> None:
    project.write("""
        name: bootcron
        agents:
          ticker: {command: [python3, -c, "import time; print('up', flush=True); time.sleep(600)"]}
    """)
    enabled = project.corral("boot", "enable")
    assert "systemd is not PID 1" in enabled.stdout and "@reboot" in enabled.stdout
    table = _crontab("-l").stdout
    assert user_crontab in table
    entries = [ln for ln in table.splitlines()
               if ln.startswith("@reboot") and str(project.manifest) in ln]
    assert len(entries) == 1
    again = project.corral("boot", "enable")  # idempotent: still one entry
    assert again.returncode == 0
    assert _crontab("-l").stdout.count(str(project.manifest)) == 2  # marker + entry
    status = project.corral("boot", "status").stdout
    assert "@reboot entry" in status and str(project.manifest) in status

    # what cron runs at boot, from the crontab's own line
    command = entries[0].removeprefix("@reboot").strip()
    booted = subprocess.run(["/bin/sh", "-c", command], cwd="/", capture_output=True,
                            text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert booted.returncode == 0, (booted.stderr, project.daemon_log())
    project.wait_for(lambda rows: rows.get("ticker.1", {}).get("state") == "running",
                     what="the fleet brought up by the @reboot entry")
    assert "ticker.1" in (project.state_dir / "boot.log").read_text()
    project.corral("down")

    disabled = project.corral("boot", "disable")
    assert "removed the @reboot entry" in disabled.stdout
    assert _crontab("-l").stdout == user_crontab  # only ours went
    assert "nothing starts fleet bootcron" in project.corral("boot", "status").stdout
    gone = project.corral("boot", "disable")  # nothing left: said, not an error
    assert gone.returncode == 0 and "no @reboot entry" in gone.stderr


def test_boot_bad_cases_are_one_line(project: Project, tmp_path: Path) -> None:
    project.write("""
        name: bootbad
        agents:
          web: {command: [python3, -m, http.server, "18733"]}
    """)
    usage = project.corral("boot", check=False)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    if not SYSTEMD_PID1:
        empty = tmp_path / "empty-path"
        empty.mkdir()
        nocron = project.corral("boot", "enable", check=False, env={"PATH": str(empty)})
        assert nocron.returncode == 1
        assert nocron.stderr.strip().splitlines() == [
            "corral: systemd is not PID 1 here and there is no crontab binary for the @reboot "
            "fallback: install cron (apt-get install cron)"]
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return
    # an unprivileged user asking for a system unit
    nobody = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                             *CORRAL, "-f", str(project.manifest), "boot", "enable",
                             "--system"], cwd="/", capture_output=True, text=True, timeout=60,
                            env={**os.environ, "HOME": "/nonexistent"})
    assert nobody.returncode == 1, nobody.stderr
    assert nobody.stderr.strip().splitlines() == [
        "corral: boot enable --system needs root: run it as root, or use --user"]
