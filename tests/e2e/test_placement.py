"""``placement`` through the real CLI and daemon, on the fake driver's test cluster (the Ray
cluster's own tests are the ray driver's): ``up --target``, the cluster's block, and ps
naming each instance's node."""

from __future__ import annotations

import json

from tests.e2e.conftest import Project


def test_up_target_places_the_fleet_and_ps_names_the_node(project: Project) -> None:
    project.write("""
        name: placed
        cluster:
          fake: {steps: [{print: [hi from the cluster]}]}
        agents:
          worker: {command: ["sleep", "300"], replicas: 2}
          pinned: {command: ["sleep", "300"], placement: local}
    """)
    try:
        up = project.corral("up", "-d", "--target", "fake")
        assert "on this host (not placed on fake): pinned" in up.stdout
        rows = project.wait_for(lambda r: all(r[n]["state"] == "running" for n in
                                              ("worker.1", "worker.2", "pinned.1")))
        assert rows["worker.2"]["node"] == "fake0002node"
        assert rows["worker.1"]["node_ip"] == "127.0.0.2"
        assert rows["pinned.1"]["node"] is None and rows["pinned.1"]["pid"]
        table = project.corral("ps").stdout.splitlines()
        assert table[0].split()[:4] == ["NAME", "STATE", "ISOLATION", "NODE"]
        assert "127.0.0.2 (fake0001)" in next(ln for ln in table if ln.startswith("worker.1"))
        logs = project.corral("logs", "worker", "--json").stdout.splitlines()
        assert {json.loads(ln)["instance"] for ln in logs if "hi from the cluster" in ln} == {
            "worker.1", "worker.2"}
        # up again without the flag: the manifest's own placement (none), so they come back
        project.corral("up", "-d")
        rows = project.wait_for(lambda r: r["worker.1"]["node"] is None
                                and r["worker.1"]["state"] == "running", timeout=30)
    finally:
        project.corral("down", check=False)
    bad = project.corral("ps", "--target", "mars", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("corral: --target mars: no such target")
