"""The bridge's venv actors (``venv`` on the daemon's side): one ``node.Venv`` per venv digest
and node, started with the agent's ``runtime_env`` (Ray builds the virtualenv then) and kept
while a run on that node uses it. Imported by the bridge only, which imports Ray."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
from collections.abc import Callable
from typing import Any

from corral.drivers.ray import protocol

_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its errors
PREFIX = "corral-venv-"


def actor_name(node: str, digest: str) -> str:
    return f"{PREFIX}{digest[:16]}-{node[:12]}"


def pip_said(exc: BaseException) -> str:
    """The line of a failed runtime_env build that says why (pip's ERROR line)."""
    lines = [ln.strip() for ln in _ESCAPES.sub("", str(exc)).splitlines() if ln.strip()]
    said = next((ln for ln in lines if ln.startswith("ERROR:")), None)
    return (said or (lines[0] if lines else type(exc).__name__))[:300]


class VenvActors:
    def __init__(self, ray: Any, namespace: str, remote: Any,
                 affinity: Callable[..., Any], say: Callable[[str, str], None]) -> None:
        self.ray, self.namespace, self.remote, self.affinity = ray, namespace, remote, affinity
        self.say = say  # (run, line): a line in the run's log
        self.actors: dict[tuple[str, str], Any] = {}  # (node id, venv digest) -> its actor
        self.of: dict[str, tuple[str, str]] = {}  # run -> the venv it runs in

    async def prefix(self, run: str, node: str, ip: str, spec: dict[str, Any]) -> str:
        """The prefix of the run's venv on ``node``: its actor there, started with the spec
        as its ``runtime_env`` unless it runs."""
        key = (node, spec["digest"])
        self.of[run] = key
        actor = self.actors.get(key)
        if actor is None:
            self.say(run, f"corral: the venv {spec['digest'][:12]} on node {ip} (Ray's "
                          "runtime_env; built once per node)\n")
            actor = self.actors[key] = self.remote.options(
                name=actor_name(node, spec["digest"]), namespace=self.namespace,
                lifetime="detached", get_if_exists=True, num_cpus=0,
                runtime_env={"pip": {"packages": spec["packages"], "pip_check": False}},
                scheduling_strategy=self.affinity(node, soft=False)).remote()
        try:
            found: str = await actor.where.remote()
        except Exception as exc:  # RuntimeEnvSetupError: pip said why
            self.actors.pop(key, None)
            self._kill(actor)
            raise protocol.Refused(f"its venv could not be built: {pip_said(exc)}") from None
        return found

    def release(self, run: str) -> None:
        """The run is over: its venv's actor goes once no run on that node uses it (Ray keeps
        the built venv in its cache, so a restart finds it again)."""
        key = self.of.pop(run, None)
        if key is None or key in self.of.values():
            return
        self._kill(self.actors.pop(key, None))

    def drop_node(self, node: str) -> None:
        """The node's actor goes (it runs nothing): its venvs' actors too."""
        for key in [k for k in self.actors if k[0] == node]:
            self._kill(self.actors.pop(key))

    async def drop_unused(self) -> None:
        """Every venv actor of this fleet that no run followed here uses (an earlier
        bridge's)."""
        listing = importlib.import_module("ray.util").list_named_actors
        named = await asyncio.to_thread(listing, all_namespaces=True)
        used = {actor_name(n, d) for n, d in self.of.values()}
        for entry in named:
            name = entry["name"]
            if entry["namespace"] == self.namespace and name.startswith(PREFIX) \
                    and name not in used:
                with contextlib.suppress(Exception):
                    self._kill(await asyncio.to_thread(self.ray.get_actor, name,
                                                       namespace=self.namespace))

    def _kill(self, actor: Any) -> None:
        if actor is not None:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
