"""The supervisor's side of agents' cloud identities (``corral.cloud``): at each start of an
agent that declares ``aws:``, a fresh grant, the config that points its SDK at corral's
``credential_process``, in the instance's private dir (``runtime.keeper``'s, beside its
secret files), and the instance's credential socket there. A re-adopted instance gets its
socket back (``rebind``): its SDK asks again after a daemon restart.

Imported by the supervisor only for a fleet with such an agent (the broker imports its
provider's SDK on its first grant: benchmark S2)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from corral.cloud.broker import CredentialBroker
from corral.drivers.base import Task
from corral.manifest import decode
from corral.runtime.keeper import SecretKeeper

SANDBOX_DIR = "/run/secrets"  # where a sandbox sees its private dir (drivers.sandbox)


def blocks(task: Task) -> list[tuple[str, Any]]:
    """The instance's cloud blocks: (provider, block)."""
    return [("aws", task.spec.aws)] if task.spec.aws is not None else []


def digest(manifest: Any, spec: Any) -> bytes:
    """What of the fleet an agent's identity is made of (its spec hash takes it): a change of
    ``cloud:`` restarts the agents that hold an identity, and only them."""
    if spec.aws is None:
        return b""
    return json.dumps(decode.dump(manifest.cloud), sort_keys=True).encode()


class Identities:
    def __init__(self, fleet: Any, project: str, keeper: SecretKeeper, *,
                 redact: Callable[[Iterable[str]], None],
                 pid_of: Callable[[str], int | None]) -> None:
        self.fleet = fleet
        self.keeper = keeper
        self.broker = CredentialBroker(fleet, project, redact=redact, pid_of=pid_of)

    def _inside(self, task: Task) -> str:
        if task.spec.isolation == "sandbox":
            return SANDBOX_DIR
        return self.keeper.instance_dir(task)

    async def task_with_identity(self, task: Task, sources: Mapping[str, Any],
                                 sent: Mapping[str, str]) -> Task:
        """The starting task with its secrets, its cloud config and no other credentials;
        a ``CloudError`` (one line) when the grant fails: the runner blocks on it."""
        files: dict[str, str] = {}
        env: dict[str, str] = {}
        drop: set[str] = set()
        for name, access in blocks(task):
            config = await self.broker.equip(task.agent, task.instance, name, access,
                                             inside=self._inside(task))
            files.update(config.files)
            env.update(config.env)
            drop.update(config.drop)
        task = await self.keeper.task_with_secrets(task, sources, sent, extra=files)
        merged = {k: v for k, v in task.env.items() if k not in drop}
        merged.update(env)
        await self.rebind(task)
        return replace(task, env=merged)

    async def rebind(self, task: Task) -> None:
        uid, gid = self.keeper.owner_ids(task)
        directory = self.keeper.instance_dir(task)
        for name, access in blocks(task):
            await self.broker.serve(task.agent, task.instance, name, access,
                                    directory=directory, uid=uid, gid=gid)

    async def close(self) -> None:
        await self.broker.close()
