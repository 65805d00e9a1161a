"""The ray placement on a real local cluster (``ray_cluster``: a head and a worker node on
loopback): output complete and in order, the whole tree stopped on its node, secrets kept out
of Ray's job and actor info, placement groups, a lost node, and nothing of corral's left on the
cluster after its driver closed. The generic driver contract runs for it too
(``test_driver_contract.py``, case ``ray``)."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.drivers.base import Handle, Task
from corral.drivers.ray.driver import RayDriver
from corral.drivers.ray.head import LocalHead
from corral.errors import DriverError
from corral.manifest import validation
from tests.contract.test_driver_contract import STUBBORN_TREE, Collect, _left_of_run, _zombie
from tests.support import raycluster

PY = sys.executable


@pytest.fixture
def cluster(ray_cluster: raycluster.Cluster) -> Iterator[raycluster.Cluster]:
    yield ray_cluster


def _task(tmp: Path, code: str, address: str, *, instance: str = "a.1", project: str = "rt",
          env: dict[str, str] | None = None, **extra: Any) -> Task:
    raw = {"command": ["python", "-c", code], "isolation": "process", "placement": "ray",
           "ray": {"address": address, **extra.pop("ray", {})}, **extra}
    return Task(project=project, agent="a", instance=instance, index=1,
                spec=validation.agent(raw), workdir=str(tmp),
                run_dir=str(tmp / ".corral" / "run" / instance),  # STATE/run/INSTANCE
                cache_dir=str(tmp / ".corral" / "cache"),
                env={"PATH": f"{Path(PY).parent}:/usr/bin:/bin", "HOME": str(tmp),
                     **(env or {})})


def run(driver: RayDriver, coro: Any, timeout: float = 90) -> Any:
    """The test's coroutine, then the driver's close, in one loop (the bridge is its child)."""
    async def go() -> Any:
        try:
            return await coro
        finally:
            await driver.close()

    return asyncio.run(asyncio.wait_for(go(), timeout))


def _listed(cluster: raycluster.Cluster, what: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(cluster.ray("list", what, "--format", "json",
                                                        "--detail", "--limit", "10000"))
    return rows


def _group_of(group: dict[str, Any], project: str, instance: str) -> bool:
    """The instance's placement group: ``corral-PROJECT-DIGEST-INSTANCE`` (its fleet's
    name on a shared cluster, ``driver.fleet_id``)."""
    name = str(group["name"])
    return name.startswith(f"corral-{project}-") and name.endswith(f"-{instance}")


def _ours(cluster: raycluster.Cluster, project: str) -> list[dict[str, Any]]:
    """The project's actors on the cluster that are not dead."""
    return [a for a in _listed(cluster, "actors")
            if a["ray_namespace"].startswith(f"corral-{project}-") and a["state"] != "DEAD"]


def test_many_lines_arrive_complete_and_in_order(cluster: raycluster.Cluster,
                                                 tmp_path: Path) -> None:
    """200k lines (past the node's buffer many times over, so the pipe waits for the bridge)."""
    driver = RayDriver()
    code = "import sys\nfor i in range(200000):\n    sys.stdout.write(f'{i}\\n')\n"

    async def go() -> None:
        out = Collect()
        handle = await driver.start(_task(tmp_path, code, cluster.address), out)
        result = await driver.wait(handle)
        assert result.success
        assert [int(x) for x in out.text().split()] == list(range(200000))
        assert out.closed == {"stdout", "stderr"}

    run(driver, go())


def test_stop_kills_the_whole_tree_on_its_node_after_the_grace_period(
        cluster: raycluster.Cluster, tmp_path: Path) -> None:
    """A child that ignores SIGTERM and a grandchild that left the session both die."""
    driver = RayDriver()
    code = STUBBORN_TREE

    async def go() -> None:
        out = Collect()
        handle = await driver.start(_task(tmp_path, code, cluster.address), out)
        pidfile = tmp_path / "grandchild.pid"
        for _ in range(200):
            if pidfile.exists() and pidfile.read_text() and "ready" in out.text():
                break
            await asyncio.sleep(0.05)
        grandchild = int(pidfile.read_text())
        assert len(_left_of_run(handle.data["run"])) >= 2  # the node is this machine
        started = time.monotonic()
        await driver.stop(handle, sig=signal.SIGTERM, timeout=0.5)
        result = await driver.wait(handle)
        assert time.monotonic() - started >= 0.5
        assert result.signal == signal.SIGKILL
        for _ in range(50):
            if not _left_of_run(handle.data["run"]):
                break
            await asyncio.sleep(0.02)
        assert _left_of_run(handle.data["run"]) == []
        assert not os.path.exists(f"/proc/{grandchild}") or _zombie(grandchild)

    run(driver, go())


def test_a_secret_reaches_the_agent_and_no_ray_job_or_actor_info(
        cluster: raycluster.Cluster, tmp_path: Path) -> None:
    driver = RayDriver()
    secret = "s3cr3t-" + os.urandom(8).hex()
    code = ("import hashlib, os, time\n"
            "print(hashlib.sha256(os.environ['API_TOKEN'].encode()).hexdigest(), flush=True)\n"
            "time.sleep(300)\n")

    async def go() -> None:
        out = Collect()
        task = _task(tmp_path, code, cluster.address, env={"API_TOKEN": secret})
        handle = await driver.start(task, out)
        for _ in range(200):
            if out.text():
                break
            await asyncio.sleep(0.05)
        assert out.text().strip() == hashlib.sha256(secret.encode()).hexdigest()
        seen = {what: await asyncio.to_thread(cluster.ray, "list", what, "--detail",
                                              "--format", "json")
                for what in ("jobs", "actors", "tasks")}
        seen["job list"] = await asyncio.to_thread(cluster.ray, "job", "list")
        assert "corral-node-" in seen["actors"]  # its supervising actor is listed...
        for what, text in seen.items():
            assert secret not in text, what  # ...with nothing of the secret
        await driver.stop(handle, sig=signal.SIGTERM, timeout=5)
        assert (await driver.wait(handle)).signal == signal.SIGTERM

    run(driver, go())


def test_cpus_and_memory_place_it_by_a_placement_group_removed_when_it_ends(
        cluster: raycluster.Cluster, tmp_path: Path) -> None:
    driver = RayDriver()
    code = "import time; print('up', flush=True); time.sleep(300)"

    async def go() -> None:
        out = Collect()
        task = _task(tmp_path, code, cluster.address, project="rtpg", instance="a.3",
                     resources={"cpus": 1, "memory": "64M"})
        handle = await driver.start(task, out)
        groups = [g for g in await asyncio.to_thread(_listed, cluster, "placement-groups")
                  if _group_of(g, "rtpg", "a.3") and g["state"] == "CREATED"]
        assert len(groups) == 1
        bundle = groups[0]["bundles"][0]
        assert bundle["unit_resources"] == {"CPU": 1.0, "memory": float(64 << 20)}
        assert bundle["node_id"] == handle.data["node"]  # it runs where its bundle landed
        await driver.stop(handle, sig=signal.SIGTERM, timeout=5)
        await driver.wait(handle)
        for _ in range(100):
            groups = [g for g in await asyncio.to_thread(_listed, cluster, "placement-groups")
                      if _group_of(g, "rtpg", "a.3") and g["state"] != "REMOVED"]
            if not groups:
                break
            await asyncio.sleep(0.1)
        assert groups == []
        too_big = _task(tmp_path, code, cluster.address, project="rtpg", instance="a.4",
                        resources={"cpus": 64}, ray={"placement_timeout": "1s"})
        with pytest.raises(DriverError, match=r"agents\.a: on the Ray cluster: no node of "
                                              r"the cluster has CPU 64 free"):
            await driver.start(too_big, Collect())

    run(driver, go())


def test_memory_is_enforced_on_the_node_by_the_process_level_s_rlimit(
        cluster: raycluster.Cluster, tmp_path: Path) -> None:
    """Beyond Ray's accounting, ``memory`` holds on the node as the process level holds it
    where it writes no cgroup: RLIMIT_AS, so an allocation past it fails in the agent."""
    driver = RayDriver()
    code = ("import resource, sys; print(resource.getrlimit(resource.RLIMIT_AS)[0], flush=True)"
            "\nsmall = bytearray(50 << 20)\ntry:\n    big = bytearray(400 << 20)\n"
            "except MemoryError:\n    print('400M refused', flush=True)\n    sys.exit(1)")

    async def go() -> None:
        out = Collect()
        task = _task(tmp_path, code, cluster.address, project="rtmem", instance="a.5",
                     resources={"memory": "256M"})
        result = await driver.wait(await driver.start(task, out))
        assert result.code == 1
        assert out.text().split() == [str(256 << 20), "400M", "refused"]

    run(driver, go())


def test_stats_sum_the_run_s_process_tree_on_its_node(cluster: raycluster.Cluster,
                                                      tmp_path: Path) -> None:
    """``stats`` is the node actor's sum over the run's tree: the command and a child holding
    80 MB, so the usage counts two processes and at least the child's memory, for two
    instances asked at once; an ended run has none."""
    driver = RayDriver()
    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', "
            "'b = bytearray(80 << 20); b[::4096] = b\"x\" * len(b[::4096]); "
            "print(\"held\", flush=True); import time; time.sleep(60)'])\n"
            "while True: time.sleep(1)\n")

    async def go() -> None:
        outs = [Collect(), Collect()]
        handles = [await driver.start(_task(tmp_path, code, cluster.address, project="rtst",
                                            instance=f"a.{i}"), outs[i - 7])
                   for i in (7, 8)]
        for _ in range(300):
            if all("held" in o.text() for o in outs):
                break
            await asyncio.sleep(0.05)
        got = await asyncio.gather(*(driver.stats(h) for h in handles))
        for usage in got:
            assert usage is not None
            assert usage.processes == 2
            assert usage.rss_bytes >= 80 << 20
            assert usage.cpu_seconds > 0
        for h in handles:
            await driver.stop(h, sig=signal.SIGTERM, timeout=2)
            await driver.wait(h)
        assert await driver.stats(handles[0]) is None

    run(driver, go())


def test_gpus_place_it_where_ray_has_them_and_name_its_devices(
        cluster: raycluster.Cluster, tmp_path: Path) -> None:
    """``resources.gpus`` is the bundle's ``GPU``: it lands on the node that has one (the
    test cluster's worker declares one, ``ray start --num-gpus 1``), and the command gets
    the ids Ray gave the bundle as ``CUDA_VISIBLE_DEVICES``."""
    driver = RayDriver()
    code = "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'), flush=True)"

    async def go() -> None:
        out = Collect()
        task = _task(tmp_path, code, cluster.address, project="rtgpu", instance="a.6",
                     resources={"gpus": 1})
        handle = await driver.start(task, out)
        assert (await driver.wait(handle)).success
        assert handle.data["node_ip"] == raycluster.WORKER_IP
        assert out.text() == "0\n"

    run(driver, go())


def test_a_lost_node_ends_its_instances_and_a_new_start_lands_on_a_node_left(
        cluster: raycluster.Cluster, tmp_path: Path) -> None:
    """The raylet of an extra worker node killed by its PID: ``wait`` says the node is lost
    (so the runner restarts per policy) and the next start goes to a node still alive."""
    driver = RayDriver()
    code = "import time; print('up', flush=True); time.sleep(300)"
    lost_ip = "127.0.0.4"

    async def go() -> None:
        with cluster.extra_node(tmp_path, lost_ip) as doomed:
            handles: list[Handle] = []
            for i in range(1, 7):  # the least loaded node takes each: one lands on the new one
                handles.append(await driver.start(
                    _task(tmp_path, code, cluster.address, instance=f"a.{i}"), Collect()))
                if handles[-1].data["node_ip"] == lost_ip:
                    break
            there = handles[-1]
            assert there.data["node_ip"] == lost_ip
            started = time.monotonic()
            os.kill(doomed.raylet_pid(), signal.SIGKILL)
            result = await asyncio.wait_for(driver.wait(there), 60)
            assert result.code is None
            assert result.error is not None
            assert result.error.startswith(f"node lost: {lost_ip} (node {there.data['node'][:12]}")
            print(f"node lost reported after {time.monotonic() - started:.1f}s")
            again = await driver.start(_task(tmp_path, code, cluster.address,
                                             instance=there.instance), Collect())
            assert again.data["node_ip"] in (raycluster.HEAD_IP, raycluster.WORKER_IP)
            for other in [*handles[:-1], again]:  # the others run on
                assert driver.exit_future(other) is not None
                assert not driver.exit_future(other).done()  # type: ignore[union-attr]
                await driver.stop(other, sig=signal.SIGKILL, timeout=1)
                assert (await driver.wait(other)).signal == signal.SIGKILL

    run(driver, go(), timeout=150)


def test_after_stop_and_close_nothing_of_corral_is_left_on_the_cluster(
        cluster: raycluster.Cluster, tmp_path: Path) -> None:
    driver = RayDriver()
    code = "import time; print('up', flush=True); time.sleep(300)"
    project = "rtgone"

    async def go() -> list[Handle]:
        handles = [await driver.start(_task(tmp_path, code, cluster.address, project=project,
                                            instance=f"a.{i}",
                                            resources={"cpus": 0.5} if i == 1 else {}),
                                      Collect()) for i in (1, 2, 3)]
        assert len({h.data["node"] for h in handles}) == 2  # both nodes run some
        assert {a["name"] for a in await asyncio.to_thread(_ours, cluster, project)} == {
            f"corral-node-{h.data['node']}" for h in handles}  # one actor per node
        for handle in handles:
            await driver.stop(handle, sig=signal.SIGTERM, timeout=5)
            await driver.wait(handle)
        return handles

    handles = run(driver, go())
    assert _ours(cluster, project) == []
    groups = [g for g in _listed(cluster, "placement-groups")
              if g["name"].startswith(f"corral-{project}-") and g["state"] != "REMOVED"]
    assert groups == []
    for handle in handles:
        assert _left_of_run(handle.data["run"]) == []


def test_a_new_bridge_stops_what_its_fleet_left_and_never_another_fleets(
        cluster: raycluster.Cluster, tmp_path: Path) -> None:
    """A daemon that left its instances running (closed without stopping them, or killed)
    and came back with no handle of them (its state lost): its new bridge stops what the
    fleet left, so the new starts are not duplicates. A fleet of the same project name
    elsewhere (another state dir: another user's "demo") shares nothing with it: its run
    goes on."""
    code = "import time; print('up', flush=True); time.sleep(300)"
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()

    def left(where: Path) -> Handle:
        """A run started, then its driver closed without stopping it."""
        driver = RayDriver()
        return run(driver, driver.start(_task(where, code, cluster.address, project="twin"),
                                        Collect()))

    def come_back(where: Path) -> None:
        """A new driver of the fleet at ``where``: one start and stop of its own."""
        driver = RayDriver()

        async def once() -> None:
            fresh = await driver.start(_task(where, code, cluster.address, project="twin",
                                             instance="a.2"), Collect())
            await driver.stop(fresh, sig=signal.SIGTERM, timeout=5)
            await driver.wait(fresh)

        run(driver, once())

    mine, theirs = left(here), left(there)
    assert _left_of_run(mine.data["run"]) and _left_of_run(theirs.data["run"])
    come_back(here)
    assert _left_of_run(mine.data["run"]) == []  # stopped by its fleet's new bridge
    assert _left_of_run(theirs.data["run"]) != []  # the other fleet's, untouched
    come_back(there)
    assert _left_of_run(theirs.data["run"]) == []


def test_a_restarted_driver_re_adopts_its_runs_and_stops_only_what_it_did_not(
        cluster: raycluster.Cluster, tmp_path: Path) -> None:
    """A driver closed while its runs go on (its daemon restarting): the next one's
    ``recover`` follows the run again, every line in order from where its node still held
    them (none lost), its stop still works; the run nothing re-adopted is stopped once
    recovery is over (``recovered``), not before."""
    counter = ("import time\nfor i in range(100000):\n    print('line', i, flush=True)\n"
               "    time.sleep(0.01)")
    first = RayDriver()
    before = Collect()

    async def leave() -> tuple[Handle, Handle]:
        kept = await first.start(_task(tmp_path, counter, cluster.address, project="rtre"),
                                 before)
        dropped = await first.start(_task(tmp_path, counter, cluster.address, project="rtre",
                                          instance="a.2"), Collect())
        await asyncio.sleep(1.0)
        return kept, dropped

    kept, dropped = run(first, leave())
    time.sleep(1.0)  # no bridge reads meanwhile: the node keeps what it prints
    second = RayDriver()
    after = Collect()

    async def come_back() -> None:
        assert await second.recover(kept, after)
        await asyncio.sleep(1.0)
        assert _left_of_run(dropped.data["run"]) != []  # recovery not over: left alone
        await second.recovered()
        assert _left_of_run(dropped.data["run"]) == []
        assert _left_of_run(kept.data["run"]) != []
        await second.stop(kept, sig=signal.SIGTERM, timeout=5)
        result = await second.wait(kept)
        assert result.signal == signal.SIGTERM

    run(second, come_back())
    old, new = ([int(ln.split()[1]) for ln in c.text().splitlines()] for c in (before, after))
    assert old == list(range(len(old))) and len(old) > 50
    # the new follow starts where the node's unacknowledged output does: at the first line
    # the old bridge had not yet sent, or a little before (at least once), never after
    assert new and new[0] <= len(old) and new == list(range(new[0], new[0] + len(new)))
    assert _left_of_run(kept.data["run"]) == []


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed: "
                    "pip install 'corral[ray]' (scripts/install.sh --test installs it)")
def test_a_cluster_out_of_reach_is_one_line_naming_its_address(tmp_path: Path) -> None:
    driver = RayDriver()
    task = _task(tmp_path, "pass", "127.0.0.2:1")

    async def go() -> None:
        with pytest.raises(DriverError, match=r"^agents.a: cannot reach the Ray cluster at "
                                              r"127.0.0.2:1: .*: start it \(ray start"):
            await driver.start(task, Collect())

    run(driver, go())


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed: "
                    "pip install 'corral[ray]' (scripts/install.sh --test installs it)")
def test_address_auto_is_a_local_head_stopped_once_nothing_runs_on_it(tmp_path: Path) -> None:
    driver = RayDriver()
    record = tmp_path / ".corral" / "cache" / "ray-head" / "head.json"

    async def go() -> int:
        out = Collect()
        handle = await driver.start(_task(tmp_path, "print('on the local head')", "auto"), out)
        assert handle.data["address"].startswith("127.0.0.1:")  # bound to loopback only
        assert handle.data["node_ip"] == "127.0.0.1"
        assert (await driver.wait(handle)).success
        assert out.text() == "on the local head\n"
        pid: int = json.loads(record.read_text())["pid"]
        token = record.parent / "auth_token"
        assert token.stat().st_mode & 0o777 == 0o600
        address = handle.data["address"]
        assert not await asyncio.to_thread(_joins, address, tmp_path / "nobody")  # no token
        assert await asyncio.to_thread(_joins, address, tmp_path / "nobody", token)
        again = await driver.start(_task(tmp_path, "pass", "auto", instance="a.2"), Collect())
        assert again.data["address"] == handle.data["address"]  # the same head
        await driver.wait(again)
        return pid

    try:
        head = run(driver, go(), timeout=150)
    finally:  # Ray's temp dir: a short stand-in under /tmp for this deep one
        shutil.rmtree(LocalHead(str(tmp_path / ".corral" / "cache")).temp_dir(),
                      ignore_errors=True)
    assert not record.exists()
    assert _session(head) == []  # the head and every Ray process it started


def _joins(address: str, home: Path, token: Path | None = None) -> bool:
    """Whether a Ray client (in a HOME of its own, with no ``~/.ray/auth_token``) connects
    to ``address``, given the head's token or none: another local user has none."""
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_AUTH_MODE", None)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    if token is not None:
        env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    probe = f"import ray; ray.init(address={address!r}, logging_level='ERROR')"
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          timeout=120).returncode == 0


def _session(sid: int) -> list[int]:
    """Live processes of session ``sid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry))
    return found


def test_a_ray_client_address_runs_and_stops_an_instance_too(cluster: raycluster.Cluster,
                                                             tmp_path: Path) -> None:
    """``ray://HOST:PORT`` (the head's Ray Client server) as well as the GCS address: the
    bridge connects through it (again when the server's per-client server dies at its
    start, a race of Ray's), and start, output, stats, a placement group and stop work."""
    driver = RayDriver()
    code = "import time\nprint('through the client', flush=True)\ntime.sleep(60)\n"

    async def go() -> None:
        out = Collect()
        task = _task(tmp_path, code, cluster.client, project="rtcl", instance="a.9",
                     resources={"cpus": 1})
        handle = await driver.start(task, out)
        for _ in range(200):
            if "through the client" in out.text():
                break
            await asyncio.sleep(0.05)
        assert out.text() == "through the client\n"
        assert handle.data["node_ip"] in (raycluster.HEAD_IP, raycluster.WORKER_IP)
        usage = await driver.stats(handle)
        assert usage is not None and usage.processes == 1
        await driver.stop(handle, sig=signal.SIGTERM, timeout=2)
        result = await driver.wait(handle)
        assert result.signal == signal.SIGTERM
        assert _left_of_run(handle.data["run"]) == []

    run(driver, go())
    assert _ours(cluster, "rtcl") == []
