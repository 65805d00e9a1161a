"""An agent's prepared dependencies on the host: its Python venv (``python_env``, built by uv)
and its ``node_modules`` (``node_env``, from ``npm ci``), each cached by a digest of its inputs
and built once per driver. Shared by the venv and sandbox levels, which differ only in when an
agent gets a Python venv (``python``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from corral.drivers.base import Output, Task
from corral.drivers.host import beneath
from corral.drivers.host import node_env as nodebuild
from corral.drivers.host.activation import venv_env
from corral.drivers.host.options import VenvOptions, node_block, venv_block
from corral.drivers.host.python_env import ensure_venv, venv_digest


def _options(task: Task) -> VenvOptions:
    return venv_block(task.spec) or VenvOptions()


class Deps:
    def __init__(self, python: Callable[[Task], bool]) -> None:
        self.python = python  # whether the agent gets a Python venv
        self._venvs: dict[str, str] = {}  # venv digest -> the venv's dir
        self._node: dict[str, str] = {}  # node digest -> the cached tree's dir

    def digest(self, task: Task) -> str:
        parts = []
        if self.python(task):
            parts.append(venv_digest(_options(task), task.workdir))
        if (node := node_block(task.spec)) is not None:
            parts.append("node:" + nodebuild.node_digest(node.package))
        return "+".join(parts)

    async def prepare(self, task: Task, progress: Output | None = None) -> None:
        if self.python(task):
            key = venv_digest(_options(task), task.workdir)
            if key not in self._venvs:
                self._venvs[key] = await ensure_venv(
                    _options(task), task.workdir, task.cache_dir, progress=progress,
                    python=_options(task).python,
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
        """This agent's Python venv (after ``prepare``); None for one without."""
        if not self.python(task):
            return None
        return self._venvs.get(venv_digest(_options(task), task.workdir))

    def environment(self, task: Task) -> dict[str, str]:
        """The task's environment with the venv's interpreter and node's ``.bin`` first."""
        env = dict(task.env)
        if self.python(task):
            venv_dir = self.venv_dir(task)
            if venv_dir is None:
                raise RuntimeError("prepare() must run before the environment is used")
            env = venv_env(venv_dir, env)
        tree = self.node_tree(task)
        if tree is not None:
            bin_dir = os.path.join(tree, "node_modules", ".bin")
            env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", os.defpath)])
        return env
