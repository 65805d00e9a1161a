"""A vm agent through the real CLI and daemon: the manifest's `isolation: vm`, the shared
workdir, the exit code, the guest's output as the agent's logs. (tests/contract/
test_vm_driver.py covers the driver: ports, powerdown, boot failures, recovery.)"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Project

pytestmark = pytest.mark.vm


def test_a_one_shot_vm_agent(project: Project, vm_guest: str) -> None:
    (project.root / "data.txt").write_text("shared with the guest\n")
    project.write("""
        name: vmfleet
        agents:
          job:
            class: compute
            isolation: vm
            command:
              - sh
              - -c
              - echo guest kernel $$(uname -s); cat data.txt; echo made > out.txt; exit 3
            restart: "no"
            resources: {cpus: 1, memory: 192M}
            vm: {boot_timeout: 120s}
    """)
    config = project.corral("config").stdout
    assert "isolation: vm" in config and "boot_timeout: 120.0" in config
    project.corral("up", "-d", timeout=300)
    rows = project.wait_for(lambda r: r["job.1"]["state"] == "exited", timeout=180,
                            what="the guest to run and power off")
    assert rows["job.1"]["exit_code"] == 3, project.records("job")
    said = [r["message"] for r in project.records("job") if r["stream"] == "stdout"]
    assert said == ["guest kernel Linux", "shared with the guest"], said
    assert (project.root / "out.txt").read_text() == "made\n"


def test_corral_run_boots_a_guest_of_its_own_and_passes_its_exit_code(
        project: Project, vm_guest: str) -> None:
    """``corral run`` of a vm agent ended in a traceback (the driver's QEMU command line exists
    only for a machine it started): it now goes through the driver, attached; ``corral exec``
    cannot enter a guest, and says what to run instead."""
    project.write("""
        name: vmrun
        agents:
          job:
            class: compute
            isolation: vm
            command: ["sh", "-c", "echo in $$(uname -s); exit 3"]
            vm: {boot_timeout: 120s}
    """)
    ran = project.corral("run", "job", check=False, timeout=240)
    assert ran.returncode == 3, ran.stderr
    assert "in Linux" in ran.stdout.splitlines(), ran.stdout
    extra = project.corral("run", "job", "--", "sh", "-c", "echo extra; exit 4", check=False,
                           timeout=240)
    assert extra.returncode == 4 and "extra" in extra.stdout.splitlines(), extra.stdout
    refused = project.corral("exec", "job", "--", "true", check=False)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
        "corral: corral exec cannot enter the guest of vm agent job: run the command in a "
        "guest of its own: corral run job -- ARGS"], refused.stderr
