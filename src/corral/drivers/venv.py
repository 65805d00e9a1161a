"""The ``venv`` isolation level: a process running in its own Python environment.

The environment is built by uv from the agent's requirements.txt or pyproject.toml (and a
Python version if given), cached by a hash of those inputs, rebuilt only when they change. The
agent runs with the venv's own interpreter first on PATH; the daemon never touches its own
sys.path for an agent.
"""

from __future__ import annotations

from typing import ClassVar

from corral.drivers.base import Capabilities, DriverHealth, Output, Task
from corral.drivers.process import ProcessDriver
from corral.drivers.venvbuild import ensure_venv, venv_digest, venv_env
from corral.manifest.spec import VenvOptions


class VenvDriver(ProcessDriver):
    name: ClassVar[str] = "venv"
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="venv", recover=True, stats=True, signals=True
    )

    def __init__(self) -> None:
        super().__init__()
        self._venvs: dict[str, str] = {}

    @staticmethod
    def _options(task: Task) -> VenvOptions:
        return task.spec.venv or VenvOptions()

    async def check(self) -> DriverHealth:
        try:
            from corral.drivers.venvbuild import find_uv

            uv = find_uv()
        except Exception as exc:  # reported, never raised: doctor lists every level
            return DriverHealth(False, f"uv not found ({exc})", "pip install uv")
        return DriverHealth(True, f"per-agent environments built with {uv}")

    def inputs_digest(self, task: Task) -> str:
        return venv_digest(self._options(task), task.workdir)

    async def prepare(self, task: Task, progress: Output | None = None) -> None:
        key = self.inputs_digest(task)
        if key not in self._venvs:
            self._venvs[key] = await ensure_venv(
                self._options(task), task.workdir, task.cache_dir, progress=progress,
                python=self._options(task).python,
            )

    def environment(self, task: Task) -> dict[str, str]:
        key = self.inputs_digest(task)
        venv_dir = self._venvs.get(key)
        if venv_dir is None:
            raise RuntimeError("prepare() must run before the environment is used")
        return venv_env(venv_dir, dict(task.env))
