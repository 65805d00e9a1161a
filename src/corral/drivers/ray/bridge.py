"""The one process per cluster that imports Ray: ``python -m corral.drivers.ray.bridge ADDRESS
NAMESPACE``, started by the ray driver (``link``) so the daemon never does (its memory and start
time are benchmarked).

It speaks JSON lines on its stdin and stdout (``protocol``): requests with ids and their
replies, and notifications it pushes (an instance's output, its end of streams, its exit).
Ray's own chatter goes to stderr. What it does on the cluster:

- one supervising actor per node (``node.Node``, shipped by value), created on first use;
- an instance with ``cpus``/``memory``/``gpus`` gets a placement group of one bundle of them, named
  ``corral-PROJECT-INSTANCE``, and runs on the node the bundle landed on; the group is removed
  when the instance ends. Without resources it goes to the least loaded alive node;
- each instance is followed by a long poll of its node actor; an actor that died reports the
  instance's end as an error that says whether its node was lost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import itertools
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from corral.drivers.host import activation as activation_module
from corral.drivers.host import beneath as beneath_module
from corral.drivers.host import looks as looks_module
from corral.drivers.host import proctree as proctree_module
from corral.drivers.ray import checks as checks_module
from corral.drivers.ray import node as node_module
from corral.drivers.ray import protocol
from corral.drivers.ray import secretdir as secretdir_module
from corral.drivers.ray.venvs import VenvActors
from corral.ownership import privdir as privdir_module

POLL = 5.0  # seconds a read of an instance's output waits on its node


@dataclass
class Placed:
    node: str
    ip: str
    group: Any = None  # its placement group, removed when it ends


LEFTOVER_GRACE = 5.0  # seconds a run an earlier bridge left gets after SIGTERM


class Bridge:
    def __init__(self, ray: Any, namespace: str, out: Any) -> None:
        self.ray = ray
        self.namespace = namespace
        self.out = out
        self.actors: dict[str, Any] = {}  # node id -> its supervising actor
        self.placed: dict[str, Placed] = {}  # run -> where it runs
        self.acked: dict[str, int] = {}  # run -> the last chunk the daemon logged
        self.follows: set[asyncio.Task[None]] = set()
        self.turn = itertools.count()
        # Ray is typed as Any here: corral type-checks without it installed
        self.affinity = importlib.import_module(
            "ray.util.scheduling_strategies").NodeAffinitySchedulingStrategy
        self.groups = importlib.import_module("ray.util.placement_group")
        self.remote_node = ray.remote(node_module.Node)
        self.venvs = VenvActors(ray, namespace, ray.remote(node_module.Venv), self.affinity,
                                self.say)
        self.remote_gpu_ids = ray.remote(node_module.gpu_ids)

    def send(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        self.out.flush()

    # --- nodes and their actors -----------------------------------------------------------

    async def alive_nodes(self) -> dict[str, str]:
        """{node id: IP} of the cluster's alive nodes."""
        nodes = await asyncio.to_thread(self.ray.nodes)
        return {n["NodeID"]: n["NodeManagerAddress"] for n in nodes if n.get("Alive")}

    def actor(self, node: str) -> Any:
        found = self.actors.get(node)
        if found is None:
            found = self.remote_node.options(
                name=f"corral-node-{node}", namespace=self.namespace, lifetime="detached",
                get_if_exists=True, num_cpus=0, max_concurrency=10_000,
                scheduling_strategy=self.affinity(node, soft=False)).remote()
            self.actors[node] = found
        return found

    def least_loaded(self, nodes: dict[str, str]) -> str:
        load = {n: 0 for n in nodes}
        for placed in self.placed.values():
            if placed.node in load:
                load[placed.node] += 1
        turn = next(self.turn)
        order = sorted(nodes)
        order = order[turn % len(order):] + order[:turn % len(order)]  # ties: round robin
        return min(order, key=lambda n: load[n])

    async def place(self, req: dict[str, Any], nodes: dict[str, str]) -> Placed:
        bundle: dict[str, float] = {}
        if req.get("cpus"):
            bundle["CPU"] = float(req["cpus"])
        if req.get("memory"):
            bundle["memory"] = float(req["memory"])
        if req.get("gpus"):
            bundle["GPU"] = float(req["gpus"])
        if not bundle:
            chosen = self.least_loaded(nodes)
            return Placed(chosen, nodes[chosen])
        groups = self.groups
        name = req["group"]
        try:  # one left by an earlier start of this instance (a killed bridge)
            stale = await asyncio.to_thread(groups.get_placement_group, name)
            await asyncio.to_thread(groups.remove_placement_group, stale)
        except ValueError:
            pass
        group = groups.placement_group([bundle], strategy="STRICT_PACK", name=name,
                                       lifetime="detached")
        try:
            await asyncio.wait_for(group.ready(), req.get("placement_timeout", 60))
        except TimeoutError:
            await asyncio.to_thread(groups.remove_placement_group, group)
            wanted = ", ".join(f"{k} {v:g}" for k, v in bundle.items())
            raise protocol.Refused(f"no node of the cluster has {wanted} free") from None
        table = await asyncio.to_thread(groups.placement_group_table, group)
        chosen = table["bundles_to_node_id"][0]
        return Placed(chosen, nodes.get(chosen, "?"), group)

    # --- the requests ---------------------------------------------------------------------

    async def start(self, req: dict[str, Any]) -> dict[str, Any]:
        nodes = await self.alive_nodes()
        if not nodes:
            raise protocol.Refused("the cluster has no alive node")
        placed = await self.place(req, nodes)
        run = req["run"]
        self.placed[run] = placed  # counted at once: starts at the same time spread
        try:
            if req.get("gpus"):  # the devices Ray gave the bundle, as CUDA names them
                req["env"]["CUDA_VISIBLE_DEVICES"] = ",".join(await self.gpu_ids(placed, req))
            prefix = await self.venvs.prefix(run, placed.node, placed.ip, req["venv"]) \
                if req.get("venv") else None
            reply = await self.actor(placed.node).start.remote(
                run, req["argv"], req["cwd"], req["env"], req["marker"], prefix,
                {"memory": req.get("memory"), "pids": req.get("pids")}, req.get("files"))
        except self.ray.exceptions.RayActorError as exc:
            self.actors.pop(placed.node, None)
            reply = {"error": f"its corral actor died: {_first_line(exc)}"}
        except protocol.Refused as exc:
            reply = {"error": str(exc)}
        if "error" in reply:
            self.placed.pop(run, None)
            await self.release(placed)
            self.venvs.release(run)
            raise protocol.Refused(f"on node {placed.ip}: {reply['error']}")
        follow = asyncio.create_task(self.follow(run, placed))
        self.follows.add(follow)
        follow.add_done_callback(self.follows.discard)
        return {"node": placed.node, "node_ip": placed.ip, "pid": reply["pid"],
                "group": req["group"] if placed.group is not None else None}

    async def gpu_ids(self, placed: Placed, req: dict[str, Any]) -> list[str]:
        """The GPU ids of the run's bundle: a task in the bundle asks Ray."""
        strategy = importlib.import_module(
            "ray.util.scheduling_strategies").PlacementGroupSchedulingStrategy
        ids: list[str] = await self.remote_gpu_ids.options(
            num_cpus=0, num_gpus=float(req["gpus"]),
            scheduling_strategy=strategy(placed.group, placement_group_bundle_index=0)).remote()
        return ids

    def say(self, run: str, line: str) -> None:
        """A line of corral's own in the run's log (stderr)."""
        self.send({"event": "output", "run": run, "stream": "stderr",
                   "data": base64.b64encode(line.encode()).decode()})

    async def release(self, placed: Placed) -> None:
        if placed.group is not None:
            await asyncio.to_thread(self.groups.remove_placement_group, placed.group)

    async def follow(self, run: str, placed: Placed) -> None:
        """Push the run's output, then its exit, until it ends or its node is lost."""
        actor, after = self.actor(placed.node), 0
        closed: set[str] = set()
        errors = self.ray.exceptions
        while True:
            try:  # the node drops only what the daemon confirmed it logged (``ack``)
                reply = await actor.read.remote(run, after, POLL, self.acked.get(run, 0))
            except errors.ActorUnavailableError:  # a passing fault: the actor may come back
                await asyncio.sleep(0.2)
                continue
            except errors.RayActorError as exc:
                self.actors.pop(placed.node, None)
                await self.ended(run, placed, closed, error=await self.lost(placed, exc))
                return
            except Exception as exc:  # Ray failed otherwise: the run must still end
                await self.ended(run, placed, closed, error=(
                    f"lost track of it on node {placed.ip}: {_first_line(exc)}"))
                return
            if reply.get("gone"):
                await self.ended(run, placed, closed, error=(
                    f"the instance is gone from node {placed.ip} (its corral actor restarted)"))
                return
            for seq, stream, data in reply["chunks"]:
                self.send({"event": "output", "run": run, "stream": stream, "seq": seq,
                           "data": base64.b64encode(data).decode()})
                after = seq
            if reply["exit"] is not None:
                code, sig = reply["exit"]
                await self.ended(run, placed, closed, code=code, signal=sig)
                actor.forget.remote(run)
                return
            for stream in reply["eof"]:
                if stream not in closed:
                    closed.add(stream)
                    self.send({"event": "eof", "run": run, "stream": stream})

    async def lost(self, placed: Placed, exc: BaseException) -> str:
        alive = await self.alive_nodes()
        if placed.node not in alive:
            return f"node lost: {placed.ip} (node {placed.node[:12]})"
        return f"the corral actor on node {placed.ip} died: {_first_line(exc)}"

    def ack(self, req: dict[str, Any]) -> None:
        """The daemon logged the run's output up to chunk ``seq`` (a notice: no reply)."""
        run = req["run"]
        if run in self.placed:
            self.acked[run] = max(self.acked.get(run, 0), int(req["seq"]))

    async def ended(self, run: str, placed: Placed, closed: set[str], *,
                    code: int | None = None, signal: int | None = None,
                    error: str | None = None) -> None:
        self.placed.pop(run, None)
        self.acked.pop(run, None)
        for stream in ("stdout", "stderr"):
            if stream not in closed:
                self.send({"event": "eof", "run": run, "stream": stream})
        self.send({"event": "exit", "run": run, "code": code, "signal": signal,
                   "error": error})
        self.venvs.release(run)
        await self.release(placed)

    async def fleet_actors(self) -> dict[str, Any]:
        """{node id: actor} of this fleet's node actors on the alive nodes (an earlier
        bridge's too). The namespace is this fleet's alone (``driver.fleet_id``)."""
        found = {}
        for node in await self.alive_nodes():
            try:
                found[node] = self.actors.get(node) or await asyncio.to_thread(
                    self.ray.get_actor, f"corral-node-{node}", namespace=self.namespace)
            except ValueError:  # no actor of this fleet on that node
                continue
        return found

    async def adopt(self, req: dict[str, Any]) -> dict[str, Any]:
        """A run an earlier bridge of this fleet started (its daemon restarted): followed
        again from what its node still holds unacknowledged, its group kept for release.
        ``{"found": False}`` when its node or its run is gone."""
        run, node = req["run"], req["node"]
        nodes = await self.alive_nodes()
        actor = (await self.fleet_actors()).get(node) if node in nodes else None
        if actor is None or not await actor.known.remote(run):
            return {"found": False}
        self.actors[node] = actor
        group = None
        if req.get("group"):
            with contextlib.suppress(ValueError):
                group = await asyncio.to_thread(self.groups.get_placement_group, req["group"])
        placed = self.placed[run] = Placed(node, nodes[node], group)
        follow = asyncio.create_task(self.follow(run, placed))
        self.follows.add(follow)
        follow.add_done_callback(self.follows.discard)
        return {"found": True}

    async def leftovers(self, req: dict[str, Any]) -> dict[str, Any]:
        """What earlier bridges of this fleet left and nothing adopted: stopped (signal, then
        kill after a grace) and forgotten, so the runner's new starts are not duplicates of
        runs nothing follows. The driver asks once its daemon's recovery is over."""
        async def one(actor: Any) -> int:
            runs = [r for r in await actor.listed.remote() if r not in self.placed]
            await asyncio.gather(*(actor.stop.remote(r, 15, LEFTOVER_GRACE) for r in runs))
            await asyncio.gather(*(actor.forget.remote(r) for r in runs))
            return len(runs)

        actors = list((await self.fleet_actors()).values())
        counts = await asyncio.gather(*(one(a) for a in actors), return_exceptions=True)
        await self.venvs.drop_unused()
        return {"stopped": sum(c for c in counts if isinstance(c, int))}

    async def stop(self, req: dict[str, Any]) -> dict[str, Any]:
        placed = self.placed.get(req["run"])
        if placed is None:
            return {}
        with contextlib.suppress(self.ray.exceptions.RayActorError):  # its follow reports it
            await self.actor(placed.node).stop.remote(req["run"], req["sig"], req["timeout"])
        return {}

    async def probe(self, req: dict[str, Any]) -> dict[str, Any]:
        """One check of a probe, run by the node actor where the instance runs."""
        placed = self.placed.get(req["run"])
        if placed is None:
            raise protocol.Refused("the instance is not running on the cluster")
        try:
            reply: dict[str, Any] = await self.actor(placed.node).probe.remote(
                req["run"], req["check"])
        except self.ray.exceptions.RayActorError as exc:
            raise protocol.Refused(f"node {placed.ip} does not answer: "
                                   f"{_first_line(exc)}") from None
        return reply

    async def usage(self, req: dict[str, Any]) -> dict[str, Any]:
        """{run: [CPU seconds, resident bytes, processes]} of every run this bridge placed,
        one call per node; a node that does not answer is left out."""
        by_node: dict[str, list[str]] = {}
        for run, placed in self.placed.items():
            by_node.setdefault(placed.node, []).append(run)

        async def one(node: str, runs: list[str]) -> dict[str, list[float]]:
            reply: dict[str, list[float]] = await self.actor(node).usage.remote(runs)
            return reply

        got = await asyncio.gather(*(one(n, r) for n, r in by_node.items()),
                                   return_exceptions=True)
        out: dict[str, Any] = {}
        for part in got:
            if isinstance(part, dict):
                out.update(part)
        return {"runs": out}

    async def close(self, req: dict[str, Any]) -> dict[str, Any]:
        """The driver leaves: its node actors that run nothing are killed; the rest run on."""
        kept = []
        for node, actor in list(self.actors.items()):
            try:
                running = await actor.alive.remote()
            except self.ray.exceptions.RayActorError:
                continue
            if running:
                kept.append(node)
            else:
                self.ray.kill(actor)
                self.venvs.drop_node(node)
        for follow in list(self.follows):
            follow.cancel()
        return {"kept": kept}

    async def handle(self, line: bytes) -> None:
        req: dict[str, Any] = json.loads(line)
        op = req.get("op")
        try:
            if op not in protocol.OPS:
                raise protocol.Refused(f"unknown request {op!r}")
            self.send({"id": req["id"], "ok": await getattr(self, op)(req)})
        except protocol.Refused as exc:
            self.send({"id": req["id"], "error": str(exc)})
        except Exception as exc:  # one request failed: the bridge serves the others
            self.send({"id": req["id"], "error": f"{type(exc).__name__}: {_first_line(exc)}"})


_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its errors


def _first_line(exc: BaseException) -> str:
    text = _ESCAPES.sub("", str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


CLIENT_TRIES = 4  # a ray:// connection's attempts (its server's start is a race: below)


async def _connect(ray: Any, address: str, namespace: str) -> None:
    """``ray.init`` on ``address``. Through a Ray Client address (``ray://HOST:PORT``) the
    server forks a per-client server while its gRPC threads run, and that child dies at
    random ("Starting Ray client server failed"; gRPC's fork handlers are off there): a new
    connection gets a new one, so it is tried again a few times."""
    for attempt in range(1, CLIENT_TRIES + 1):
        try:
            await asyncio.to_thread(ray.init, address=address, namespace=namespace,
                                    log_to_driver=False, logging_level=logging.ERROR)
            return
        except Exception as exc:
            if not address.startswith("ray://") or attempt == CLIENT_TRIES or \
                    "client server failed" not in str(exc):
                raise
            with contextlib.suppress(Exception):
                ray.shutdown()
            await asyncio.sleep(0.5 * attempt)


async def serve(address: str, namespace: str, out: Any) -> int:
    def failed(problem: str, fix: str) -> int:
        out.write(json.dumps({"event": "failed", "problem": problem, "fix": fix}).encode()
                  + b"\n")
        out.flush()
        return 1

    try:
        ray: Any = importlib.import_module("ray")
    except ImportError:
        return failed("the ray driver needs Ray, which is not installed",
                      protocol.INSTALL)
    # nodes need no corral
    for module in (node_module, checks_module, looks_module, beneath_module, secretdir_module,
                   privdir_module, activation_module, proctree_module):
        ray.cloudpickle.register_pickle_by_value(module)
    try:
        await _connect(ray, address, namespace)
    except Exception as exc:
        return failed(f"cannot reach the Ray cluster at {address}: {_first_line(exc)}",
                      "start it (ray start --head) or fix ray.address")
    bridge = Bridge(ray, namespace, out)
    bridge.send({"event": "ready", "nodes": len(await bridge.alive_nodes())})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=protocol.LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task[None]] = set()
    try:
        while line := await reader.readline():
            op = json.loads(line).get("op")
            if op == "ack":  # a notice, in order, at once
                bridge.ack(json.loads(line))
                continue
            if op == "close":  # after the others it answered
                await asyncio.gather(*pending, return_exceptions=True)
                await bridge.handle(line)
                break
            task = asyncio.create_task(bridge.handle(line))
            pending.add(task)
            task.add_done_callback(pending.discard)
    finally:
        for follow in list(bridge.follows):
            follow.cancel()
        await asyncio.gather(*bridge.follows, return_exceptions=True)
        ray.shutdown()
    return 0


def main() -> int:
    address, namespace = sys.argv[1], sys.argv[2]
    out = os.fdopen(os.dup(1), "wb")  # the protocol's; whatever else prints goes to stderr
    os.dup2(2, 1)
    return asyncio.run(serve(address, namespace, out))


if __name__ == "__main__":
    sys.exit(main())
