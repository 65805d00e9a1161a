"""The ``process`` isolation level: a plain child process in its own session and workdir.

A recipe for the shared host launcher (``drivers.host.launcher``: named pipes that survive a
daemon kill, pidfd exit, the instance's cgroup joined by a shell, re-adoption; the stop of
``drivers.host.stop``): the agent's own command, its environment as the task has it, its
``resources`` as the group's limits, run as corral or as its ``user:`` (``drivers.host.runas``).
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from corral.drivers.base import (
    Capabilities,
    Driver,
    ExitResult,
    Handle,
    Launch,
    Output,
    ResourceUsage,
    Task,
)
from corral.drivers.host import runas
from corral.drivers.host.launcher import Launcher
from corral.limits.limiter import Limiter
from corral.manifest.spec import Resources
from corral.ownership import identity as identities


class ProcessDriver(Driver):
    name: ClassVar[str] = "process"
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="process", recover=True, stats=True, signals=True
    )

    def __init__(self, limiter: Limiter | None = None) -> None:
        self.launcher = Launcher(self.name, limiter)
        self.limiter = self.launcher.limiter

    # --- what to run ----------------------------------------------------------------------

    def environment(self, task: Task) -> dict[str, str]:
        return dict(task.env)

    def argv(self, task: Task) -> list[str]:
        return task.spec.argv

    def passed_fds(self, task: Task) -> list[int]:
        return []

    def identity(self, task: Task) -> identities.Identity | None:
        return runas.identity(task)

    def hand_over(self, task: Task, ident: identities.Identity, exe: str) -> None:
        runas.hand_over(task, ident, exe)

    def as_identity(self, ident: identities.Identity, argv: list[str], exe: str
                    ) -> tuple[list[str], str]:
        return runas.as_identity(ident, argv, exe)

    def resources(self, task: Task) -> Resources:
        return task.spec.resources

    # --- lifecycle: the launcher's ----------------------------------------------------------

    def known_pids(self) -> set[int]:
        return self.launcher.known_pids()

    async def start(self, task: Task, output: Output) -> Handle:
        return await self.launcher.start(task, self, output)

    def exit_future(self, handle: Handle) -> asyncio.Future[ExitResult] | None:
        return self.launcher.exit_future(handle)

    async def wait(self, handle: Handle) -> ExitResult:
        return await self.launcher.wait(handle)

    async def stop(self, handle: Handle, *, sig: int, timeout: float) -> None:
        await self.launcher.stop(handle, sig=sig, timeout=timeout)

    def complete(self, handle: Handle) -> Handle:
        return self.launcher.complete(handle)

    async def recover(self, handle: Handle, output: Output) -> bool:
        return await self.launcher.recover(handle, output)

    async def stats(self, handle: Handle) -> ResourceUsage | None:
        return await self.launcher.stats(handle)

    def foreground(self, task: Task, argv: list[str] | None = None) -> Launch | None:
        from corral.drivers.host import foreground  # the CLI's alone: not the daemon's (S2)

        return foreground.host_launch(self, task, argv)  # corral run/exec: its own child
