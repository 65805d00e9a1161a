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
