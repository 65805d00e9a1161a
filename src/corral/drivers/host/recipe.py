"""What a host-process driver launches (its ``Recipe``, asked by the launcher at each start)
and how its command is found on the host.

The recipe is what differs between the process, venv, sandbox and vm levels: the environment,
the argv (the agent's command, bwrap around it, or QEMU), the descriptors that argv names,
whom it runs as and what becomes theirs, and the limits of its group.
"""

from __future__ import annotations

import os
from typing import Protocol

from corral.drivers.base import Task
from corral.errors import DriverError
from corral.manifest.spec import Resources
from corral.ownership import identity as identities


class Recipe(Protocol):
    """What a host-process driver launches for a task, asked in this order at each start."""

    def environment(self, task: Task) -> dict[str, str]: ...

    def argv(self, task: Task) -> list[str]: ...

    def passed_fds(self, task: Task) -> list[int]:
        """Descriptors the argv just built names: inherited by the child, closed here once
        it is spawned."""
        ...

    def identity(self, task: Task) -> identities.Identity | None: ...

    def hand_over(self, task: Task, ident: identities.Identity, exe: str) -> None: ...

    def as_identity(self, ident: identities.Identity, argv: list[str], exe: str
                    ) -> tuple[list[str], str]: ...

    def resources(self, task: Task) -> Resources:
        """The limits of the instance's group."""
        ...


def _which(exe: str, path: str) -> str | None:
    """``shutil.which(exe, path=path)`` for a bare name, as it does it on POSIX. Importing
    shutil loads its optional archive codecs (bz2, lzma): ~0.7 MB resident that the daemon
    would keep for the life of the fleet without ever archiving (benchmark S2)."""
    if not path:
        return None
    seen: set[str] = set()
    for directory in path.split(os.pathsep):
        if directory in seen:
            continue
        seen.add(directory)
        name = os.path.join(directory, exe)
        if os.path.exists(name) and os.access(name, os.X_OK) and not os.path.isdir(name):
            return name
    return None


class Commands:
    """A driver's executables found so far, by (name, PATH, workdir): a second start of the
    same command looks nothing up but that it is still there."""

    def __init__(self) -> None:
        self._resolved: dict[tuple[str, str, str], str] = {}

    def resolve(self, argv: list[str], env: dict[str, str], task: Task) -> str:
        exe = argv[0]
        key = (exe, env.get("PATH", os.defpath), task.workdir)
        found = self._resolved.get(key)
        if found is not None and os.access(found, os.X_OK):
            return found
        found = self._find(argv, env, task)
        self._resolved[key] = found
        return found

    @staticmethod
    def _find(argv: list[str], env: dict[str, str], task: Task) -> str:
        exe = argv[0]
        if "/" in exe:
            path = exe if os.path.isabs(exe) else os.path.join(task.workdir, exe)
            if not os.path.exists(path):
                raise DriverError(f"agents.{task.agent}: command not found: {exe}",
                                  f"check the path in agents.{task.agent}.command")
            return path
        found = _which(exe, env.get("PATH", os.defpath))
        if found is None:
            raise DriverError(f"agents.{task.agent}: command not found: {exe}",
                              f"install {exe} or fix agents.{task.agent}.command")
        return found
