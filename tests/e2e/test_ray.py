"""``placement: ray`` through the real CLI and daemon, on the session's real Ray cluster (a
head and a worker node on loopback): ps names each instance's node, the logs store what the
cluster's instances print, a crash is restarted there, and ``down`` leaves no actor of the
project's and no process of its instances."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from corral.drivers.ray.head import LocalHead
from tests.e2e.conftest import Project, pids_with_marker
from tests.support import raycluster
from tests.support.prometheus import free_port


def _cmdline(pid: int) -> bytes:
    """A process's command line; empty once it is gone (a Ray worker ends at any time)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _actors(cluster: raycluster.Cluster, namespace: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(cluster.ray("list", "actors", "--detail",
                                                        "--format", "json"))
    return [a for a in rows if a["ray_namespace"].startswith(f"{namespace}-")
            and a["state"] != "DEAD"]


def test_a_placed_fleet_runs_on_the_cluster_restarts_there_and_down_leaves_nothing(
        project: Project, ray_cluster: raycluster.Cluster) -> None:
    metrics_port = free_port()
    project.write(f"""
        name: rayfleet
        metrics: {{port: {metrics_port}}}
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
        # on the cluster's nodes (which one is the least loaded's choice, and the crasher's
        # restarts move the load meanwhile: the spread itself is the driver tests')
        assert ips <= {raycluster.HEAD_IP, raycluster.WORKER_IP}, ips
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
        placed = [pid for pid in pids_with_marker(project.root) if b"hi from the cluster"
                  in _cmdline(pid)]
        assert len(placed) == 2  # the nodes are this machine: their processes are seen here
        # the placed instances' usage, summed on their nodes, in corral's /metrics
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=30) as r:
            body = r.read().decode()
        for name in ("worker.1", "worker.2"):
            rss = re.search(r'corral_instance_memory_rss_bytes\{agent="worker",instance="'
                            + re.escape(name) + r'"\} (\S+)', body)
            assert rss is not None and float(rss.group(1)) > 1 << 20, body
            assert f'corral_instance_cpu_seconds_total{{agent="worker",instance="{name}"}}' \
                in body
    finally:
        project.corral("down", check=False)
    assert _actors(ray_cluster, "corral-rayfleet") == []
    assert pids_with_marker(project.root) == []


def test_target_ray_places_the_fleet_and_scale_stop_start_restart_work_there(
        project: Project, ray_cluster: raycluster.Cluster) -> None:
    """``up --target ray`` through the Ray Client address (the issue's ``ray://``): the plain
    agent goes to the cluster, the one over a chosen Python stays here (said on up's first
    line); then ``scale``, ``stop``, ``start`` and ``restart`` act on the cluster's instances
    as on local ones, and ``down`` leaves nothing there."""
    project.write(f"""
        name: raytarget
        cluster:
          ray: {{address: "{ray_cluster.client}"}}
        agents:
          worker:
            command: ["python", "-c", "import time; print('up', flush=True); time.sleep(300)"]
          pinned:
            command: ["python", "-c", "import time; time.sleep(300)"]
            venv: {{python: "{sys.version_info.major}.{sys.version_info.minor}"}}
    """)
    try:
        up = project.corral("up", "-d", "--target", "ray", timeout=300)
        assert "on this host (not placed on ray): pinned (venv.python" in up.stdout
        rows = project.wait_for(lambda r: r["worker.1"]["state"] == "running"
                                and r["pinned.1"]["state"] == "running", timeout=240)
        assert rows["worker.1"]["node"] and rows["pinned.1"]["node"] is None
        project.corral("scale", "worker=3")
        rows = project.wait_for(lambda r: all(r.get(f"worker.{i}", {}).get("state") ==
                                              "running" for i in (1, 2, 3)), timeout=90,
                                what="three workers on the cluster")
        assert all(rows[f"worker.{i}"]["node"] for i in (1, 2, 3))
        first = rows["worker.2"]["started_at"]
        project.corral("restart", "worker.2")
        project.wait_for(lambda r: r["worker.2"]["state"] == "running"
                         and r["worker.2"]["started_at"] != first, timeout=60,
                         what="worker.2 running again after its restart")
        project.corral("stop", "worker")
        project.wait_for(lambda r: all(r[f"worker.{i}"]["state"] == "stopped"
                                       for i in (1, 2, 3)), timeout=60)
        assert [p for p in pids_with_marker(project.root)
                if b"print('up'" in _cmdline(p)] == []  # nothing of theirs runs on the nodes
        project.corral("start", "worker")
        project.wait_for(lambda r: all(r[f"worker.{i}"]["state"] == "running"
                                       for i in (1, 2, 3)), timeout=90)
    finally:
        project.corral("down", check=False)
    assert _actors(ray_cluster, "corral-raytarget") == []
    assert pids_with_marker(project.root) == []


def test_a_lost_node_s_instances_come_back_on_the_nodes_left(
        project: Project, ray_cluster: raycluster.Cluster, tmp_path_factory: Any) -> None:
    """The raylet of a third node killed by its PID: its instance ends as ``node lost``, and
    the runner restarts it (its policy) on a node still alive; ps says where, and why."""
    lost_ip = "127.0.0.5"
    with ray_cluster.extra_node(tmp_path_factory.mktemp("lost"), lost_ip) as doomed:
        project.write(f"""
            name: raylost
            cluster:
              ray: {{address: "{ray_cluster.address}"}}
            agents:
              worker:
                command: ["python", "-c", "import time; print('up', flush=True); time.sleep(300)"]
                placement: ray
                replicas: 3
                restart: {{policy: on-failure, backoff: {{initial: 100ms, factor: 1, max: 100ms}}}}
        """)
        try:
            project.corral("up", "-d")
            rows = project.wait_for(lambda r: all(r[f"worker.{i}"]["state"] == "running"
                                                  for i in (1, 2, 3)), timeout=90)
            there = next(n for n, r in rows.items() if r["node_ip"] == lost_ip)  # one a node
            doomed_node = rows[there]["node"]
            os.kill(doomed.raylet_pid(), signal.SIGKILL)
            rows = project.wait_for(
                lambda r: r[there]["restarts"] >= 1 and r[there]["state"] == "running",
                timeout=60, what=f"{there} restarted on a node left")
            assert rows[there]["node_ip"] in (raycluster.HEAD_IP, raycluster.WORKER_IP)
            assert rows[there]["node"] != doomed_node
            assert all(rows[f"worker.{i}"]["restarts"] == 0 for i in (1, 2, 3)
                       if f"worker.{i}" != there)  # the others ran on
            events = project.corral("events", "--json", check=False).stdout
            assert f"node lost: {lost_ip}" in events  # why it restarted
        finally:
            project.corral("down", check=False)


def test_address_auto_runs_a_local_head_that_down_stops(project: Project) -> None:
    """No address: corral starts a Ray head of its own (on 127.0.0.1) under the state dir,
    and it is gone once ``down`` stopped what ran there."""
    project.write("""
        name: rayauto
        agents:
          worker:
            command: ["python", "-c", "import time; print('up', flush=True); time.sleep(300)"]
            placement: ray
    """)
    record = project.state_dir / "cache" / "ray-head" / "head.json"
    try:
        project.corral("up", "-d", timeout=180)
        rows = project.wait_for(lambda r: r["worker.1"]["state"] == "running", timeout=120)
        assert rows["worker.1"]["node_ip"] == "127.0.0.1"
        head = json.loads(record.read_text())["pid"]
        assert Path(f"/proc/{head}").exists()
    finally:
        project.corral("down", check=False)
        shutil.rmtree(LocalHead(str(project.state_dir / "cache")).temp_dir(),
                      ignore_errors=True)  # Ray's temp dir: a short stand-in under /tmp
    for _ in range(300):
        if not Path(f"/proc/{head}").exists():
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{head}").exists()
    assert not record.exists()


def test_a_secret_printed_on_the_cluster_is_redacted_and_in_no_ray_info(
        project: Project, ray_cluster: raycluster.Cluster) -> None:
    """A secret in the environment and one as a file: both reach the agent on its node
    (the file in a 0700 dir of the node's own, not the host's secrets dir, removed when the
    run ends), print redacted, and appear in no Ray job, actor or task info."""
    token = "tok-on-the-cluster-" + os.urandom(6).hex()
    key = "key-in-a-file-" + os.urandom(6).hex()
    project.file("key.txt", key)
    project.file("leak.py", """\
import os, stat, time
where = os.environ["CORRAL_SECRETS_DIR"]
print("say", os.environ["API_TOKEN"], flush=True)
print("file", open(os.path.join(where, "api.key")).read(), flush=True)
print("dir", where, oct(stat.S_IMODE(os.stat(where).st_mode)), flush=True)
time.sleep(300)
""")
    project.write(f"""
        name: raysecret
        secrets:
          token: {{environment: MY_TOKEN_VAR}}
          key: {{file: key.txt}}
        cluster:
          ray: {{address: "{ray_cluster.address}"}}
        agents:
          leaky:
            command: python leak.py
            placement: ray
            secrets: [{{source: token, env: API_TOKEN}}, {{source: key, target: api.key}}]
    """)

    def said() -> dict[str, str]:
        return {m.split()[0]: m for m in (x["message"] for x in project.records("leaky"))}

    try:
        project.corral("up", "-d", env={"MY_TOKEN_VAR": token})
        project.wait_for(lambda r: r["leaky.1"]["state"] == "running" and "dir" in said(),
                         timeout=60, what="the secrets printed, redacted in the log")
        lines = said()
        assert lines["say"] == "say ***"
        assert lines["file"] == "file ***"
        _, where, mode = lines["dir"].split()
        assert mode == "0o700"
        assert Path(where).name.startswith("corral-secrets-")  # the node's own dir, in memory
        assert Path(where).parent == Path("/dev/shm" if os.path.isdir("/dev/shm") else
                                          tempfile.gettempdir())
        seen = [ray_cluster.ray("list", what, "--detail", "--format", "json")
                for what in ("jobs", "actors", "tasks")]
        seen.append(ray_cluster.ray("job", "list"))
        assert all(token not in text and key not in text for text in seen)
        logs = project.corral("logs", "leaky").stdout
        assert token not in logs and key not in logs
        assert Path(where).is_dir()  # (the nodes are this machine)
    finally:
        project.corral("down", check=False)
    assert not Path(where).exists()  # removed with the run


WORKER = """\
import os, socket
host, port = os.environ["CORRAL_ADDR_CACHE"].rsplit(":", 1)
with socket.create_connection((host, int(port)), timeout=10) as s:
    f = s.makefile("rb")
    for _ in range(10):
        s.sendall(b"INCR worked\\r\\n")
        assert f.readline().startswith(b":")
with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:  # its node's actor started it
    parent = f.read().split(b"\\0")[0].decode()
print("worked on", os.environ["CORRAL_ADDR_CACHE"], "under", parent, flush=True)
"""

REPORT = """\
import os, socket
host, port = os.environ["CORRAL_ADDR_CACHE"].rsplit(":", 1)
with socket.create_connection((host, int(port)), timeout=10) as s:
    s.sendall(b"GET worked\\r\\n")
    f = s.makefile("rb")
    f.readline()
    print("total", f.readline().strip().decode(), flush=True)
"""


def test_a_mixed_fleet_orders_local_and_cluster_agents_and_they_reach_each_other(
        project: Project, ray_cluster: raycluster.Cluster) -> None:
    """A local Redis (Debian's redis-server, a real one), then cluster workers that wait for
    it to be healthy and reach it at their ``CORRAL_ADDR_CACHE``, then a local job that waits
    for them to complete and reads what they wrote: ``depends_on`` across the two sides."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/install.sh --test installs it)")
    port = free_port()
    project.file("worker.py", WORKER)
    project.file("report.py", REPORT)
    project.write(f"""
        name: raymixed
        cluster:
          ray: {{address: "{ray_cluster.address}"}}
        agents:
          cache:
            command: redis-server --port {port} --save "" --appendonly no
            readiness: {{tcp: {port}, period: 200ms}}
          worker:
            command: python worker.py
            placement: ray
            replicas: 3
            restart: "no"
            depends_on: {{cache: {{condition: healthy}}}}
          report:
            command: python report.py
            restart: "no"
            depends_on: {{worker: {{condition: completed_successfully}}}}
    """)
    try:
        project.corral("up", "-d")
        rows = project.wait_for(lambda r: r["report.1"]["state"] == "exited", timeout=120,
                                what="the local report after the cluster's workers")
        assert rows["report.1"]["exit_code"] == 0
        assert all(rows[f"worker.{i}"]["exit_code"] == 0 for i in (1, 2, 3))
        assert [r["message"] for r in project.records("report")] == ["total 30"]
        worked = [r for r in project.records("worker") if r["message"].startswith("worked")]
        assert {r["instance"] for r in worked} == {"worker.1", "worker.2", "worker.3"}
        assert all(" under ray::Node" in r["message"] for r in worked), worked  # (its title
        # names the method it runs: ray::Node.read, say)
        events = [json.loads(ln) for ln in project.corral(
            "events", "--json").stdout.splitlines()]

        def first(instance: str, state: str) -> float:
            return min(e["time"] for e in events
                       if e["instance"] == instance and e["state"] == state)

        workers = [f"worker.{i}" for i in (1, 2, 3)]
        assert first("cache.1", "running") < min(first(w, "starting") for w in workers)
        assert max(first(w, "exited") for w in workers) < first("report.1", "starting")
    finally:
        project.corral("down", check=False)
    assert pids_with_marker(project.root) == []


def test_probes_of_a_placed_agent_run_on_its_node(
        project: Project, ray_cluster: raycluster.Cluster) -> None:
    """tcp, http, exec and heartbeat checks run by the node actor where the instance runs
    (the exec probe's parent is that actor, a Ray worker titled ``ray::...``); the runner
    keeps the loop: healthy, unhealthy with the node's detail, a liveness restart."""
    port, closed = free_port(), free_port()
    project.file("beat.py", "import pathlib, time\npathlib.Path('beat').touch()\n"
                            "print('beat once', flush=True)\ntime.sleep(300)\n")
    project.write(f"""
        name: rayprobes
        cluster:
          ray: {{address: "{ray_cluster.address}"}}
        agents:
          web:
            command: python -m http.server {port} --bind 127.0.0.1
            placement: ray
            readiness: {{http: {{port: {port}, path: /}}, period: 300ms}}
            liveness:  # ($$: the shell's variable, not one the manifest fills in)
              exec: {{command: [sh, -c, "grep -q ray:: /proc/$$PPID/cmdline"]}}
              period: 300ms
              timeout: 10s  # a busy machine's slow fork is not the failure looked for
          shut:
            command: python -c "import time; time.sleep(300)"
            placement: ray
            readiness: {{tcp: {closed}, period: 300ms, failure_threshold: 1}}
          beat:
            command: python beat.py
            placement: ray
            liveness: {{heartbeat: beat, within: 1s, period: 300ms, failure_threshold: 1}}
            restart: {{policy: always, backoff: {{initial: 100ms, factor: 1, max: 100ms}}}}
    """)
    try:
        project.corral("up", "-d")
        rows = project.wait_for(
            lambda r: r["web.1"]["health"] == "healthy" and r["shut.1"]["health"] == "unhealthy"
            and r["beat.1"]["restarts"] >= 1, timeout=90,
            what="web healthy, shut unhealthy, beat restarted by its liveness probe")
        events = project.corral("events", "--json", "web").stdout
        assert rows["web.1"]["restarts"] == 0, events  # its exec probe passed: on the node
        assert f"tcp 127.0.0.1:{closed}" in rows["shut.1"]["reason"]
        assert "heartbeat beat not touched" in project.corral("events", "--json", "beat").stdout
    finally:
        project.corral("down", check=False)


SHOW_SIX = ("import os, six, sys, time; print('six', six.__version__, 'in', sys.prefix, "
            "os.environ['VIRTUAL_ENV'] == sys.prefix, flush=True); time.sleep(300)")


@pytest.mark.timeout(900)  # three venv builds by Ray's pip, each 30 s or more on 2 cores
def test_venv_agents_on_the_cluster_get_their_requirements_from_ray_once_per_digest(
        project: Project, ray_cluster: raycluster.Cluster) -> None:
    """``isolation: venv`` placed on the cluster: each agent's requirements.txt becomes a
    runtime_env Ray builds on the instance's node; two versions of one library side by side;
    a restart of an unchanged agent finds its venv (same prefix, no new build); a changed
    file is a new digest, so a new venv. Needs PyPI, as the venv level's own tests do."""
    for name, version in (("old", "1.15.0"), ("new", "1.16.0")):
        project.file(f"{name}/requirements.txt", f"six=={version}\n")
    project.write(f"""
        name: rayvenv
        cluster:
          ray: {{address: "{ray_cluster.address}"}}
        agents:
          old:
            isolation: venv
            workdir: old
            venv: {{requirements: requirements.txt}}
            command: ["python", "-c", "{SHOW_SIX}"]
            placement: ray
          new:
            isolation: venv
            workdir: new
            venv: {{requirements: requirements.txt}}
            command: ["python", "-c", "{SHOW_SIX}"]
            placement: ray
    """)

    def said(agent: str, count: int = 1) -> list[str]:
        lines = [r["message"] for r in project.records(agent)
                 if r["message"].startswith("six ")]
        return lines if len(lines) >= count else []

    try:
        project.corral("up", "-d", timeout=300)
        project.wait_for(lambda r: said("old") and said("new"), timeout=400,
                         what="both venv agents printing their six")
        old, new = said("old")[0].split(), said("new")[0].split()
        assert old[1] == "1.15.0" and new[1] == "1.16.0"
        assert old[-1] == new[-1] == "True"  # VIRTUAL_ENV is the venv it runs in
        assert "runtime_resources/pip" in old[3] and old[3] != new[3]
        builds = [r for r in project.records("old") if "corral: the venv" in r["message"]]
        assert len(builds) == 1
        project.corral("restart", "old")
        project.wait_for(lambda r: said("old", 2), timeout=120, what="old restarted")
        assert said("old", 2)[1].split()[3] == old[3]  # its venv, found again
        (project.root / "old" / "requirements.txt").write_text("six==1.16.0\n")
        project.corral("up", "-d", timeout=300)
        project.wait_for(lambda r: said("old", 3), timeout=400, what="old on its new venv")
        assert said("old", 3)[2].split()[1] == "1.16.0"
    finally:
        project.corral("down", check=False)
    assert not any(a["name"].startswith("corral-venv-") for a in _actors(ray_cluster,
                                                                          "corral-rayvenv"))


def test_a_killed_daemon_s_successor_re_adopts_the_cluster_s_instances(
        project: Project, ray_cluster: raycluster.Cluster) -> None:
    """The daemon SIGKILLed while placed instances run: the next ``up`` re-adopts them (same
    run on the same node, no restart) and their lines go on with none lost."""
    project.file("counter.py", "import time\nfor i in range(100000):\n"
                               "    print('line', i, flush=True)\n    time.sleep(0.01)\n")
    project.write(f"""
        name: rayadopt
        cluster:
          ray: {{address: "{ray_cluster.address}"}}
        agents:
          counter:
            command: python counter.py
            placement: ray
            replicas: 2
    """)
    try:
        project.corral("up", "-d")
        before = project.wait_for(lambda r: all(r[f"counter.{i}"]["state"] == "running"
                                                for i in (1, 2)), timeout=90)
        time.sleep(1.0)
        daemon = project.daemon_pid()
        assert daemon is not None
        os.kill(daemon, signal.SIGKILL)
        time.sleep(1.5)  # the instances print on while no daemon reads
        project.corral("up", "-d")
        after = project.ps()
        for name in ("counter.1", "counter.2"):
            assert after[name]["state"] == "running" and after[name]["restarts"] == 0
            assert after[name]["node"] == before[name]["node"]
            assert abs(after[name]["started_at"] - before[name]["started_at"]) < 0.01
        time.sleep(1.0)
        records = project.records("counter")
        counting = [p for p in pids_with_marker(project.root) if b"counter.py" in _cmdline(p)]
        assert len(counting) == 2  # the two it had, none started again beside them
    finally:
        project.corral("down", check=False)
    for name in ("counter.1", "counter.2"):
        numbers = [int(r["message"].split()[1]) for r in records if r["instance"] == name]
        assert len(numbers) > 200
        # none lost, in order; the seam may repeat the lines the old bridge had sent but its
        # node had not heard acknowledged (at least once)
        seen = sorted(set(numbers))
        assert seen == list(range(len(seen))), f"{name}: lost lines"
        backs = [(a, b) for a, b in itertools.pairwise(numbers) if b <= a]
        assert len(backs) <= 1, f"{name}: out of order more than at the seam: {backs}"
