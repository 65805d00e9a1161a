"""The ``ray`` placement: an agent's command runs on a node of a Ray cluster, with corral's own
start, wait, stop and output manners (``placement: ray``; ``cluster: {ray: {address: ...}}``).

The daemon never imports Ray: per cluster address and fleet, one bridge process does
(``link``, ``bridge``), with one supervising actor per node (``node``), never one per
instance (each actor is a Python worker process of its own). What the agent declares maps to
Ray's terms:

- ``resources.cpus``, ``memory`` and ``gpus``: a placement group of one bundle (``CPU``,
  ``memory``, ``GPU``), which picks the node; without them the least loaded alive node; the
  bundle's GPUs are the instance's ``CUDA_VISIBLE_DEVICES``;
- the environment, secrets included, goes in the start call's arguments, never in a
  ``runtime_env`` (Ray shows those in its job info);
- a node lost ends its instances with an error (``node lost: IP ...``), so the runner restarts
  them as its policy says, on the nodes that are left;
- ``close`` ends the bridges, not the instances; a node actor running nothing goes with them.

``address: auto`` is a local head corral starts itself (``head``), stopped when the driver
closes with nothing left running on it.

Probes run where the instance runs: its tcp, http, exec and heartbeat checks go to its node
actor (``check_remote``, ``checks``); the runner keeps the loop and decides.

``isolation: venv``: the agent's requirements become a ``runtime_env`` Ray resolves on the
instance's node, named by the venv level's digest (``venv``).

A daemon restart re-adopts (``recover``): the node actors run on, detached, and keep what the
daemon has not acknowledged logging; what nothing re-adopts is stopped once recovery is over
(``recovered``).

Stats: each node actor sums its runs' process trees from /proc; one ``usage`` request per
bridge answers for all of its runs, and callers within ``USAGE_MAX_AGE`` share it (a
``/metrics`` scrape asks for every instance at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from corral.drivers.base import (
    Capabilities,
    Driver,
    DriverHealth,
    ExitResult,
    Handle,
    Output,
    ResourceUsage,
    Task,
    driver_errors,
)
from corral.drivers.host.proctree import MARKER
from corral.drivers.ray import options as ray_opts
from corral.drivers.ray import protocol, secretdir
from corral.drivers.ray import venv as ray_venv
from corral.drivers.ray.head import LocalHead
from corral.drivers.ray.link import LOOPBACK, Link
from corral.errors import DriverError
from corral.lean.sha import sha256
from corral.manifest.spec import Probe

CONNECT_TIMEOUT = 60.0  # a bridge's ray.init
USAGE_MAX_AGE = 0.5  # seconds a bridge's usage answer serves the stats of all its runs


def fleet_id(task: Task) -> str:
    """The fleet's name on a cluster other fleets share: its project and a digest of its
    host and state dir, so two projects named alike (two users' "demo") never share a
    namespace or a placement group's name."""
    state = os.path.dirname(os.path.dirname(task.run_dir))  # STATE/run/INSTANCE
    where = f"{socket.gethostname()}\0{os.path.abspath(state)}".encode()
    return f"{task.project}-{sha256(where).hexdigest()[:8]}"


def seen_from(env: Mapping[str, str], host_ip: str) -> dict[str, str]:
    """``env`` as a node reaches the others: the host's loopback in ``CORRAL_ADDR_*`` and
    ``CORRAL_HOST_*`` (``manifest.peers``) becomes ``host_ip``, the host's address on the way
    to the cluster (unchanged when the cluster runs on this host's loopback)."""
    if host_ip == LOOPBACK:
        return dict(env)
    out = dict(env)
    for key, value in env.items():
        if key.startswith("CORRAL_HOST_") and value == LOOPBACK:
            out[key] = host_ip
        elif key.startswith("CORRAL_ADDR_") and value.startswith(f"{LOOPBACK}:"):
            out[key] = host_ip + value[len(LOOPBACK):]
    return out


def describe(probe: Probe) -> dict[str, Any]:
    """What a node needs of a probe to run one check of it (``checks.run_check``)."""
    out: dict[str, Any] = {"kind": probe.kind, "timeout": probe.timeout}
    if probe.tcp is not None:
        out.update(host=probe.tcp.host, port=probe.tcp.port)
    elif probe.http is not None:
        h = probe.http
        out.update(host=h.host, port=h.port, path=h.path, scheme=h.scheme, status=list(h.status))
    elif probe.exec is not None:
        out.update(command=list(probe.exec.command))
    elif probe.heartbeat is not None:
        out.update(file=probe.heartbeat, within=probe.heartbeat_within)
    return out


class RayDriver(Driver):
    name: ClassVar[str] = "ray"
    blocks: ClassVar[Mapping[str, type]] = ray_opts.blocks
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="ray", recover=True, stats=True, signals=True, probes_remote=True
    )

    def __init__(self) -> None:
        self._links: dict[tuple[str, str], asyncio.Task[Link]] = {}
        self._runs: dict[str, tuple[Link, asyncio.Future[ExitResult]]] = {}  # by run id
        self._current: dict[str, str] = {}  # instance -> its run, while it runs
        self._heads: dict[str, LocalHead] = {}  # ``address: auto``: by address
        self._starting_head = asyncio.Lock()
        # while the daemon recovers, a new bridge leaves what earlier ones left running (it
        # may be re-adopted); after, a new bridge stops it at once (``leftovers``)
        self._recovering = False
        # per bridge: when its last usage answer was asked for, and the answer
        self._usage: dict[Link, tuple[float, asyncio.Future[dict[str, Any]]]] = {}

    async def check(self) -> DriverHealth:
        if importlib.util.find_spec("ray") is None:
            return DriverHealth(False, "Ray is not installed", protocol.INSTALL)
        return DriverHealth(True, "Ray installed (the cluster is reached at the first start)")

    async def _link(self, address: str, fleet: str) -> Link:
        """The bridge to ``address`` for ``fleet`` (``fleet_id``), started on first use."""
        if importlib.util.find_spec("ray") is None:
            raise DriverError("the ray placement needs Ray, which is not installed",
                              protocol.INSTALL)
        key = (address, fleet)
        opening = self._links.get(key)
        if opening is not None and opening.done() and (
                opening.exception() is not None or opening.result().gone is not None):
            opening = None  # failed, or its bridge died since: a new one
        if opening is None:
            local = self._heads.get(address)
            env = local.env() if local is not None else None
            opening = asyncio.create_task(self._open(address, f"corral-{fleet}", env))
            self._links[key] = opening
        return await asyncio.shield(opening)

    async def _open(self, address: str, namespace: str, env: dict[str, str] | None) -> Link:
        link = Link(address, namespace, env)
        await link.open(CONNECT_TIMEOUT)
        if not self._recovering:
            await link.request("leftovers")
        return link

    async def recover(self, handle: Handle, output: Output) -> bool:
        """Follow again a run an earlier daemon's bridge started: its node actor still runs
        it (detached) and holds what it printed that was not acknowledged."""
        data = handle.data
        run, address, fleet, node = (data.get(k) for k in ("run", "address", "fleet", "node"))
        if not (run and address and fleet and node):
            return False
        self._recovering = True
        if data.get("head"):  # address: auto: that state dir's head, if it still runs there
            local = LocalHead(data["head"])
            found = local.running()
            if found is None or found[1] != address:
                return False
            self._heads[address] = local
        try:
            link = await self._link(address, fleet)
        except DriverError:
            return False
        done = link.follow(run, output)
        try:
            reply = await link.request("adopt", run=run, node=node, group=data.get("group"))
        except DriverError:
            reply = {}
        if not reply.get("found"):
            link.forget(run)
            return False
        self._runs[run] = (link, done)
        self._current[handle.instance] = run
        return True

    async def recovered(self) -> None:
        """What earlier bridges left and nothing re-adopted is stopped now."""
        self._recovering = False
        for opening in list(self._links.values()):
            if opening.done() and not opening.cancelled() and opening.exception() is None:
                with contextlib.suppress(DriverError):
                    await opening.result().request("leftovers")

    def inputs_digest(self, task: Task) -> str:
        return ray_venv.digest(task)  # a venv agent's requirements: changed, it restarts

    async def start(self, task: Task, output: Output) -> Handle:
        options = ray_opts.ray_options(task.spec)
        with driver_errors(task, only=DriverError):
            venv = ray_venv.pip_spec(task)
            files = secretdir.read(task.env)  # the host's secrets dir is not on the node
            address, head_dir = options.address, None
            if address == "auto":
                address, head_dir = await self._local_head(task), task.cache_dir
            fleet = fleet_id(task)
            link = await self._link(address, fleet)
        run = f"{task.instance}-{uuid.uuid4().hex[:12]}"
        done = link.follow(run, output)
        res = task.spec.resources
        try:
            with driver_errors(task, "on the Ray cluster", only=DriverError):
                placed = await link.request(
                    "start", run=run, argv=task.spec.argv, cwd=task.workdir,
                    env={**seen_from(task.env, link.host_ip), MARKER: run}, marker=MARKER,
                    cpus=res.cpus,
                    memory=res.memory, pids=res.pids, gpus=res.gpus,
                    group=f"corral-{fleet}-{task.instance}",
                    placement_timeout=options.placement_timeout, venv=venv, files=files)
        except BaseException:
            link.forget(run)
            raise
        self._runs[run] = (link, done)
        self._current[task.instance] = run
        return Handle(driver=self.name, instance=task.instance, pid=None,
                      started_at=time.time(),
                      data={"run": run, "node": placed["node"], "node_ip": placed["node_ip"],
                            "address": address, "pid_on_node": str(placed["pid"]),
                            "fleet": fleet, "group": placed.get("group") or "",
                            "head": head_dir or ""})

    def exit_future(self, handle: Handle) -> asyncio.Future[ExitResult] | None:
        found = self._runs.get(handle.data.get("run", ""))
        return found[1] if found is not None else None

    async def wait(self, handle: Handle) -> ExitResult:
        run = handle.data.get("run", "")
        found = self._runs.get(run)
        if found is None:
            return ExitResult(code=None, error="not started by this driver")
        link, done = found
        result = await asyncio.shield(done)
        self._runs.pop(run, None)
        if self._current.get(handle.instance) == run:
            del self._current[handle.instance]
        link.forget(run)
        return result

    async def check_remote(self, task: Task, probe: Probe, began: float) -> tuple[bool, str]:
        """The check runs on the instance's node (``checks``), a heartbeat counted from the
        run's start on that node's clock (the file's mtime is that clock's too)."""
        run = self._current.get(task.instance)
        found = self._runs.get(run or "")
        if run is None or found is None:
            raise DriverError(f"{task.instance} is not running on the cluster",
                              "it is probed once it runs")
        reply = await found[0].request("probe", run=run, check=describe(probe))
        return bool(reply["ok"]), str(reply["detail"])

    async def stats(self, handle: Handle) -> ResourceUsage | None:
        """The run's process tree on its node, as its node actor sums it."""
        run = handle.data.get("run", "")
        found = self._runs.get(run)
        if found is None or found[1].done():
            return None
        link = found[0]
        asked = self._usage.get(link)
        now = time.monotonic()
        if asked is None or now - asked[0] > USAGE_MAX_AGE or (
                asked[1].done() and asked[1].exception() is not None):
            asked = (now, asyncio.ensure_future(link.request("usage")))
            asked[1].add_done_callback(lambda f: f.cancelled() or f.exception())
            self._usage = {k: v for k, v in self._usage.items() if not k.gone}
            self._usage[link] = asked
        try:
            reply = await asyncio.shield(asked[1])
        except DriverError:
            return None
        got = reply.get("runs", {}).get(run)
        if got is None:
            return None
        return ResourceUsage(cpu_seconds=float(got[0]), rss_bytes=int(got[1]),
                             processes=int(got[2]))

    async def stop(self, handle: Handle, *, sig: int, timeout: float) -> None:
        found = self._runs.get(handle.data.get("run", ""))
        if found is None or found[1].done():
            return
        link, _ = found
        try:
            await link.request("stop", run=handle.data["run"], sig=sig, timeout=timeout)
        except DriverError:
            if not link.gone:  # a dead bridge already ended the run
                raise

    async def _local_head(self, task: Task) -> str:
        """``address: auto``: the address of this state dir's local head, started if need be."""
        if importlib.util.find_spec("ray") is None:
            raise DriverError("the ray placement needs Ray, which is not installed",
                              protocol.INSTALL)
        async with self._starting_head:
            local = next((h for h in self._heads.values() if h.cache_dir == task.cache_dir),
                         None) or LocalHead(task.cache_dir)
            address = await local.ensure()
            self._heads[address] = local
            return address

    async def close(self) -> None:
        """The bridges end; a local head this driver used stops when nothing runs on it."""
        links = [t.result() for t in self._links.values()
                 if t.done() and not t.cancelled() and t.exception() is None]
        for opening in self._links.values():
            if not opening.done():
                opening.cancel()
        self._links.clear()
        kept = await asyncio.gather(*(link.close() for link in links), return_exceptions=True)
        busy = {link.address for link, nodes in zip(links, kept, strict=True)
                if not isinstance(nodes, list) or nodes}
        for address, local in list(self._heads.items()):
            if address not in busy:
                await local.stop()
                del self._heads[address]
