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

from collections.abc import Mapping
from typing import ClassVar

from corral.drivers.base import Capabilities, DriverHealth, Output, Task
from corral.drivers.host import options as host_options
from corral.drivers.host.deps import Deps
from corral.drivers.host.hosted import HostedDriver
from corral.drivers.host.options import node_block, venv_block


def _python(task: Task) -> bool:
    return venv_block(task.spec) is not None or node_block(task.spec) is None


class VenvDriver(HostedDriver):
    name: ClassVar[str] = "venv"
    blocks: ClassVar[Mapping[str, type]] = host_options.blocks
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="venv", recover=True, stats=True, signals=True
    )

    def __init__(self) -> None:
        super().__init__()
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
