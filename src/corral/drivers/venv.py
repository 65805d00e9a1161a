"""The ``venv`` isolation level: a process running in its own Python environment, its own
``node_modules``, or both.

The Python environment is built by uv from the agent's requirements.txt or pyproject.toml (and
a Python version if given), cached by a hash of those inputs, rebuilt only when they change.
The agent runs with the venv's own interpreter first on PATH; the daemon never touches its own
sys.path for an agent. A ``node:`` block gets a ``node_modules`` from ``npm ci``, cached the
same way (``nodebuild``), linked into the workdir, its ``.bin`` on PATH. An agent with only a
``node:`` block gets no Python venv.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar

from corral.drivers.base import Capabilities, DriverHealth, Output, Task
from corral.drivers.host import beneath
from corral.drivers.host import node_env as nodebuild
from corral.drivers.host import options as host_options
from corral.drivers.host.options import VenvOptions, node_block, venv_block
from corral.drivers.host.python_env import ensure_venv, venv_digest, venv_env
from corral.drivers.process import ProcessDriver


class VenvDriver(ProcessDriver):
    name: ClassVar[str] = "venv"
    blocks: ClassVar[Mapping[str, type]] = host_options.blocks
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="venv", recover=True, stats=True, signals=True
    )

    def __init__(self) -> None:
        super().__init__()
        self._venvs: dict[str, str] = {}
        self._node: dict[str, str] = {}  # node digest -> the cached tree's dir

    @staticmethod
    def _python(task: Task) -> bool:
        return venv_block(task.spec) is not None or node_block(task.spec) is None

    @staticmethod
    def _options(task: Task) -> VenvOptions:
        return venv_block(task.spec) or VenvOptions()

    async def check(self) -> DriverHealth:
        try:
            from corral.drivers.host.python_env import find_uv

            uv = find_uv()
        except Exception as exc:  # reported, never raised: doctor lists every level
            return DriverHealth(False, f"uv not found ({exc})", "pip install uv")
        return DriverHealth(True, f"per-agent environments built with {uv}")

    def inputs_digest(self, task: Task) -> str:
        parts = []
        if self._python(task):
            parts.append(venv_digest(self._options(task), task.workdir))
        if (node := node_block(task.spec)) is not None:
            parts.append("node:" + nodebuild.node_digest(node.package))
        return "+".join(parts)

    async def prepare(self, task: Task, progress: Output | None = None) -> None:
        if self._python(task):
            key = venv_digest(self._options(task), task.workdir)
            if key not in self._venvs:
                self._venvs[key] = await ensure_venv(
                    self._options(task), task.workdir, task.cache_dir, progress=progress,
                    python=self._options(task).python,
                )
        node = node_block(task.spec)
        if node is not None:
            key = nodebuild.node_digest(node.package)
            if key not in self._node:
                self._node[key] = await nodebuild.ensure_node_modules(
                    node.package, task.cache_dir, progress=progress)
            root = task.project_dir if beneath.under(node.package, task.project_dir) else ""
            nodebuild.link_node_modules(node.package, self._node[key], root)

    def node_tree(self, task: Task) -> str | None:
        """The cached dir holding this agent's node_modules (after ``prepare``)."""
        node = node_block(task.spec)
        return None if node is None else self._node.get(nodebuild.node_digest(node.package))

    def venv_dir(self, task: Task) -> str | None:
        """This agent's Python venv (after ``prepare``); None for a Node-only agent."""
        if not self._python(task):
            return None
        return self._venvs.get(venv_digest(self._options(task), task.workdir))

    def environment(self, task: Task) -> dict[str, str]:
        env = dict(task.env)
        if self._python(task):
            venv_dir = self.venv_dir(task)
            if venv_dir is None:
                raise RuntimeError("prepare() must run before the environment is used")
            env = venv_env(venv_dir, env)
        tree = self.node_tree(task)
        if tree is not None:
            bin_dir = os.path.join(tree, "node_modules", ".bin")
            env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", os.defpath)])
        return env
