"""``placement: ray`` through the real CLI and daemon, on the session's real Ray cluster (a
head and a worker node on loopback): ps names each instance's node, the logs store what the
cluster's instances print, a crash is restarted there, and ``down`` leaves no actor of the
project's and no process of its instances."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Project, pids_with_marker
from tests.support import raycluster


def _actors(cluster: raycluster.Cluster, namespace: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(cluster.ray("list", "actors", "--detail",
                                                        "--format", "json"))
    return [a for a in rows if a["ray_namespace"] == namespace and a["state"] != "DEAD"]


def test_a_placed_fleet_runs_on_the_cluster_restarts_there_and_down_leaves_nothing(
        project: Project, ray_cluster: raycluster.Cluster) -> None:
    project.write(f"""
        name: rayfleet
        cluster:
          ray: {{address: "{ray_cluster.address}"}}
        agents:
          worker:
            command: ["python", "-c", "import time; print('hi from the cluster', flush=True); time.sleep(300)"]
            placement: ray
            replicas: 2
          crasher:
            command: ["python", "-c", "print('about to fail', flush=True); raise SystemExit(3)"]
            placement: ray
            restart: {{policy: on-failure, backoff: {{initial: 100ms, factor: 1, max: 100ms}}}}
          local:
            command: ["sleep", "300"]
    """)  # noqa: E501
    try:
        project.corral("up", "-d")
        rows = project.wait_for(lambda r: all(r[n]["state"] == "running" for n in
                                              ("worker.1", "worker.2", "local.1"))
                                and r["crasher.1"]["restarts"] >= 2, timeout=90,
                                what="the placed fleet running, the crasher restarted")
        ips = {rows[n]["node_ip"] for n in ("worker.1", "worker.2")}
        assert ips == {raycluster.HEAD_IP, raycluster.WORKER_IP}  # the least loaded node each
        assert rows["worker.1"]["node"] and rows["worker.1"]["pid"] is None
        assert rows["local.1"]["node"] is None and rows["local.1"]["pid"]
        assert rows["crasher.1"]["exit_code"] == 3
        table = project.corral("ps").stdout.splitlines()
        line = next(ln for ln in table if ln.startswith("worker.1"))
        assert rows["worker.1"]["node_ip"] in line
        logs = project.corral("logs", "worker", "--json").stdout.splitlines()
        assert {json.loads(ln)["instance"] for ln in logs if "hi from the cluster" in ln} == {
            "worker.1", "worker.2"}
        crashes = project.corral("logs", "crasher", "--json").stdout.splitlines()
        assert sum("about to fail" in ln for ln in crashes) >= 2
        assert len(_actors(ray_cluster, "corral-rayfleet")) == 2  # one per node
        placed = [pid for pid in pids_with_marker(project.root)
                  if b"hi from the cluster" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(placed) == 2  # the nodes are this machine: their processes are seen here
    finally:
        project.corral("down", check=False)
    assert _actors(ray_cluster, "corral-rayfleet") == []
    assert pids_with_marker(project.root) == []
