"""What every host-process level is: a recipe (what to launch) over a launcher it holds.

``process``, ``venv``, ``sandbox`` and ``vm`` each subclass ``HostedDriver`` directly; none
inherits from another level. What they share is not code in a base class but the parts they
compose: ``launcher.Launcher`` (pipes, pidfd exit, cgroup join, re-adoption, stats), the stop
of ``stop``, the identity steps of ``runas``, a ``deps.Deps`` for those that build a venv or a
``node_modules``. This class only forwards the lifecycle to the launcher (Nomad's drivers
embed their executor the same way) and gives the recipe's defaults: the agent's own command,
the task's environment and resources, run as corral or as its ``user:``. A level overrides
what differs and nothing else.
"""

from __future__ import annotations

import asyncio

from corral.drivers.base import Driver, ExitResult, Handle, Launch, Output, ResourceUsage, Task
from corral.drivers.host import runas
from corral.drivers.host.launcher import Launcher
from corral.limits.limiter import Limiter
from corral.manifest.spec import Resources
from corral.ownership import identity as identities


class HostedDriver(Driver):
    """A level whose instances are host processes; ``self.launcher`` runs them."""

    def __init__(self, limiter: Limiter | None = None) -> None:
        self.launcher = Launcher(self.name, limiter)
        self.limiter = self.launcher.limiter

    # --- the recipe (drivers.host.recipe.Recipe): what the launcher asks at each start -----

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

    # --- the lifecycle: the launcher's -----------------------------------------------------

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

    # --- corral run / exec -------------------------------------------------------------------

    def foreground(self, task: Task, argv: list[str] | None = None) -> Launch | None:
        from corral.drivers.host import foreground  # the CLI's alone: not the daemon's (S2)

        return foreground.host_launch(self, task, argv)  # corral run/exec: its own child
