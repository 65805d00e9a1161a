"""The environment of an activated venv. Plain Python (the ray node ships it by value, to run a
placed agent in the venv Ray built there), so the venv level and a cluster's node activate a
venv alike."""

from __future__ import annotations

import os
from collections.abc import Mapping


def venv_env(venv_dir: str, base_env: Mapping[str, str]) -> dict[str, str]:
    """``base_env`` as an activated venv would have it: VIRTUAL_ENV set, the venv's bin first
    on PATH, PYTHONHOME removed (it would point the venv's python at another stdlib)."""
    env = dict(base_env)
    env.pop("PYTHONHOME", None)
    env["VIRTUAL_ENV"] = venv_dir
    bin_dir = os.path.join(venv_dir, "bin")
    rest = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p and p != bin_dir]
    env["PATH"] = os.pathsep.join([bin_dir, *rest])
    return env
