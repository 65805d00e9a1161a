"""The supervisor's side of agents' cloud identities (``corral.cloud``): at each start of an
agent that declares ``aws:``, a fresh grant, the config that points its SDK at corral's
``credential_process``, in the instance's private dir (``runtime.keeper``'s, beside its
secret files), and the instance's credential socket there. A re-adopted instance gets its
socket back (``rebind``): its SDK asks again after a daemon restart.

Imported by the supervisor only for a fleet with such an agent; no SDK is imported here (a
provider's calls run in its worker process: benchmark S2)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
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
        self._uploading: dict[str, asyncio.Lock] = {}
        self._jobs: set[asyncio.Future[None]] = set()
        self._periodic: dict[str, asyncio.Future[None]] = {}
        self.last: dict[str, dict[str, Any]] = {}  # each instance's last upload (ps --json)

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
        if task.spec.inputs is not None:
            await self.sync_inputs(task)
        return replace(task, env=merged)

    # --- the cloud data plane: inputs before a start, artifacts after ------------------------

    async def _transfer(self, task: Task, op: str, where: str, **fields: Any) -> Any:
        """One transfer by the provider's worker, with the instance's current grant."""
        grant = await self.broker.current(task.agent, task.instance, "aws", task.spec.aws)
        provider = self.broker.provider("aws")
        return await asyncio.to_thread(provider.transfer, op, grant, where, **fields)

    async def sync_inputs(self, task: Task) -> Any:
        """``inputs.from`` into ``inputs.to`` (what changed only); a ``CloudError`` (one
        line: nothing there, denied, unreachable) blocks the start."""
        inputs = task.spec.inputs
        assert inputs is not None
        uid, gid = self.keeper.owner_ids(task)
        where = f"agents.{task.agent}.inputs"
        return await self._transfer(task, "download", where, url=inputs.from_,
                                    workdir=task.workdir, to=inputs.to,
                                    index=os.path.join(task.run_dir, "inputs.json"),
                                    uid=uid, gid=gid)

    def _index(self, task: Task) -> str:
        return os.path.join(task.run_dir, "artifacts.json")

    def pending(self, task: Task) -> bool:
        """An upload a previous daemon began and did not finish."""
        try:
            with open(self._index(task), encoding="utf-8") as f:
                return bool(json.load(f).get("pending"))
        except (OSError, ValueError):
            return False

    def _mark(self, task: Task, pending: bool) -> None:
        path = self._index(task)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
        data["pending"] = pending
        with open(f"{path}.tmp", "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(f"{path}.tmp", path)

    async def upload_artifacts(self, task: Task, why: str,
                               record: Callable[[dict[str, Any]], Any]) -> None:
        """``artifacts.paths`` of the workdir under ``artifacts.to`` (changed files only);
        the outcome is an ``artifacts`` event (its URL, files, bytes, or the one-line
        problem). ``why``: exit, every, or resume (a restarted daemon's)."""
        from corral.cloud.provider import CloudError

        artifacts = task.spec.artifacts
        assert artifacts is not None
        url = artifacts.to.replace("{instance}", task.instance).replace("{agent}", task.agent)
        event: dict[str, Any] = {"agent": task.agent, "instance": task.instance,
                                 "event": "artifacts", "to": url, "why": why}
        lock = self._uploading.setdefault(task.instance, asyncio.Lock())
        async with lock:
            await asyncio.to_thread(self._mark, task, True)
            started = time.time()
            try:
                moved = await self._transfer(task, "upload", f"agents.{task.agent}.artifacts",
                                             url=url, workdir=task.workdir,
                                             paths=list(artifacts.paths),
                                             index=self._index(task))
            except CloudError as exc:
                event.update(time=time.time(), ok=False, reason=str(exc))
            else:
                await asyncio.to_thread(self._mark, task, False)
                event.update(time=time.time(), ok=True, files=moved["files"],
                             bytes=moved["bytes"], unchanged=moved["kept"],
                             seconds=round(time.time() - started, 3),
                             reason=f"{moved['files']} files ({moved['bytes']} bytes) to "
                                    f"{url}; {moved['kept']} unchanged")
        self.last[task.instance] = {k: event.get(k) for k in (
            "time", "ok", "to", "why", "files", "bytes", "unchanged", "reason")}
        record(event)

    def after(self, task: Task, why: str, record: Callable[[dict[str, Any]], Any]) -> None:
        """Upload in the background (the supervisor's state changes do not wait)."""
        job = asyncio.ensure_future(self.upload_artifacts(task, why, record))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    def every(self, task: Task, record: Callable[[dict[str, Any]], Any]) -> None:
        """``when: every D``: an upload each period while the instance runs."""
        from corral.manifest.cloud import when_every

        assert task.spec.artifacts is not None
        period = when_every(task.spec.artifacts.when)
        if period is None or task.instance in self._periodic:
            return

        async def loop() -> None:
            while True:
                await asyncio.sleep(period)
                await self.upload_artifacts(task, "every", record)

        self._periodic[task.instance] = asyncio.ensure_future(loop())

    def quiet(self, instance: str) -> None:
        periodic = self._periodic.pop(instance, None)
        if periodic is not None:
            periodic.cancel()

    async def rebind(self, task: Task) -> None:
        uid, gid = self.keeper.owner_ids(task)
        directory = self.keeper.instance_dir(task)
        for name, access in blocks(task):
            await self.broker.serve(task.agent, task.instance, name, access,
                                    directory=directory, uid=uid, gid=gid)

    async def close(self) -> None:
        """The periodic uploads stop; those under way finish first (an exit's last upload
        is the one that matters), then the sockets close."""
        for instance in list(self._periodic):
            self.quiet(instance)
        if self._jobs:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._jobs, return_exceptions=True)
        await self.broker.close()
