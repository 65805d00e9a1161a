"""The venv level on a Ray node (``isolation: venv`` with ``placement: ray``): the agent's
requirements, from the same ``venv:`` block and files as on this host, become a
``runtime_env`` ``pip`` spec that Ray resolves on the node the instance was placed on.

One small actor per venv and node holds it (``node.Venv``, named after the venv digest the
venv level already uses): Ray builds the virtualenv when that actor starts, keeps it while a
worker uses it, and the node actor runs the agent's command with its ``bin`` first on PATH.
An unchanged agent (same digest) finds its actor and is not re-resolved; a changed file is a
new digest, so a new actor and a new build (the digest is a comment line of the spec, so
Ray's own cache key changes with it).

The environment is Ray's virtualenv over the node's Python (``--system-site-packages``: Ray
and what it installed stay visible beneath the agent's own packages), so ``venv.python`` and
a ``node:`` block are refused here with one line: run such an agent on this host.
"""

from __future__ import annotations

import os
from typing import Any

from corral.drivers.base import Task
from corral.drivers.host.options import VenvOptions, venv_block
from corral.drivers.host.python_env import pyproject_path, venv_digest
from corral.drivers.ray import options as ray_opts
from corral.errors import DriverError

LOCAL_FIX = "run the agent on this host (placement: local)"


def _options(task: Task) -> VenvOptions:
    return venv_block(task.spec) or VenvOptions()


def digest(task: Task) -> str:
    """The venv level's digest of the agent's requirements; "" for a process agent."""
    if task.spec.isolation != "venv":
        return ""
    return venv_digest(_options(task), task.workdir)


def pip_spec(task: Task) -> dict[str, Any] | None:
    """``{"digest": ..., "packages": [...]}`` for a venv agent (None for a process agent):
    requirements files by absolute path (the node reads them in the agent's workdir, as it
    runs the command there), the pyproject's directory, the extra packages."""
    if task.spec.isolation != "venv":
        return None
    problem = ray_opts.unplaceable(task.spec)
    if problem is not None:
        raise DriverError(problem, f"drop it, or {LOCAL_FIX}")
    options = _options(task)
    found = digest(task)
    packages = [f"# corral venv {found}"]
    if options.requirements is not None:
        packages.append("-r " + os.path.abspath(os.path.join(task.workdir,
                                                             options.requirements)))
    pyproject = pyproject_path(options, task.workdir)
    if pyproject is not None:
        packages.append(os.path.dirname(os.path.abspath(pyproject)))
    packages += options.packages
    return {"digest": found, "packages": packages}
