"""The ``venv`` isolation level: a process running in its own Python environment, its own
``node_modules``, or both.

The Python environment is built by uv from the agent's requirements.txt or pyproject.toml (and
a Python version if given), cached by a hash of those inputs, rebuilt only when they change.
The agent runs with the venv's own interpreter first on PATH; the daemon never touches its own
sys.path for an agent. A ``node:`` block gets a ``node_modules`` from ``npm ci``, cached the
same way (``node_env``), linked into the workdir, its ``.bin`` on PATH. An agent with only a
``node:`` block gets no Python venv (``drivers.host.deps``).

Launched as at the process level (``drivers.host.launcher``), with that environment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import ClassVar

from corral.drivers.base import (
    Capabilities,
    Driver,
    DriverHealth,
    ExitResult,
    Handle,
    Launch,
    Output,
    ResourceUsage,
    Task,
)
from corral.drivers.host import options as host_options
from corral.drivers.host import runas
from corral.drivers.host.deps import Deps
from corral.drivers.host.launcher import Launcher
from corral.drivers.host.options import node_block, venv_block
from corral.manifest.spec import Resources
from corral.ownership import identity as identities


def _python(task: Task) -> bool:
    return venv_block(task.spec) is not None or node_block(task.spec) is None


class VenvDriver(Driver):
    name: ClassVar[str] = "venv"
    blocks: ClassVar[Mapping[str, type]] = host_options.blocks
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="venv", recover=True, stats=True, signals=True
    )

    def __init__(self) -> None:
        self.launcher = Launcher(self.name)
        self.limiter = self.launcher.limiter
        self.deps = Deps(python=_python)

    async def check(self) -> DriverHealth:
        try:
            from corral.drivers.host.python_env import find_uv

            uv = find_uv()
        except Exception as exc:  # reported, never raised: doctor lists every level
            return DriverHealth(False, f"uv not found ({exc})", "pip install uv")
        return DriverHealth(True, f"per-agent environments built with {uv}")

    def inputs_digest(self, task: Task) -> str:
        return self.deps.digest(task)

    async def prepare(self, task: Task, progress: Output | None = None) -> None:
        await self.deps.prepare(task, progress)

    def node_tree(self, task: Task) -> str | None:
        """The cached dir holding this agent's node_modules (after ``prepare``)."""
        return self.deps.node_tree(task)

    def venv_dir(self, task: Task) -> str | None:
        """This agent's Python venv (after ``prepare``); None for a Node-only agent."""
        return self.deps.venv_dir(task)

    # --- what to run ----------------------------------------------------------------------

    def environment(self, task: Task) -> dict[str, str]:
        return self.deps.environment(task)

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
