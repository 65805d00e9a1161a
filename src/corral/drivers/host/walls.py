"""The sandbox's walls as the driver builds them: bind sources opened so they cannot lead out
of their roots (``drivers.beneath``), and the manifest's secret files masked in every view.

Kept apart from ``drivers.sandbox`` so that driver reads as the lifecycle it adds, and apart
from ``drivers.bwrap`` (which only turns a ``View`` into an argv) because this part looks at
the host's files.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from functools import cache

from corral.drivers.base import Task
from corral.drivers.host import beneath
from corral.errors import DriverError
from corral.manifest.spec import Manifest

REFUSED_FIX = ("replace the link with the real directory (an agent may have made it), or "
                "name the real path in corral.yaml")


class Opener:
    """Opens an instance's bind sources beneath their roots; every fd goes to ``fds`` (the
    caller passes them to bwrap and closes them). A path's root is the outermost of
    ``roots`` it lies under: the project dir, corral's state dir, the secrets root, and the
    instance's own writable binds (for paths outside the others)."""

    def __init__(self, task: Task, fds: list[int], roots: Iterable[str]) -> None:
        self._task = task
        self._fds = fds
        self._roots = [os.path.normpath(r) for r in roots if r]

    def open_if(self, path: str, where: str) -> int | None:
        """As ``open``; None for a path that is not there."""
        try:
            return self.open(path, where)
        except _Missing:
            return None

    def open(self, path: str, where: str) -> int:
        agent = self._task.agent
        try:
            fd = beneath.open_beneath(beneath.root_for(path, self._roots), path)
        except beneath.Escape as exc:
            raise DriverError(f"agents.{agent}.{where}: {exc}: refused", REFUSED_FIX) from None
        except (FileNotFoundError, NotADirectoryError):
            raise _Missing(f"agents.{agent}.{where}: {path} does not exist",
                           "create it, or use a named volume (NAME:/target)"
                           if where == "volumes" else "create it, or fix corral.yaml") from None
        except OSError as exc:
            raise DriverError(f"agents.{agent}.{where}: cannot open {path}: "
                              f"{exc.strerror or exc}", "check its permissions") from None
        self._fds.append(fd)
        return fd


class _Missing(DriverError):
    pass


def bind_roots(task: Task) -> list[str]:
    """The roots an instance's bind sources are resolved beneath (see ``Opener``)."""
    secrets_dir = task.env.get("CORRAL_SECRETS_DIR") or ""
    return [task.project_dir, os.path.dirname(os.path.dirname(task.run_dir)),
            os.path.dirname(secrets_dir) if secrets_dir else "", task.workdir,
            *(v.source for v in task.spec.volumes if not v.named and not v.read_only)]


def canonical(task: Task, path: str, where: str) -> str:
    """``path`` as the kernel names the inode found beneath its root: no link left in it
    (for an engine that resolves the path itself; see ``containers.runargs``)."""
    fds: list[int] = []
    Opener(task, fds, bind_roots(task)).open(path, where)
    try:
        return beneath.path_of(fds[0])
    finally:
        os.close(fds[0])


def is_a_home(prefix: str, env: dict[str, str]) -> bool:
    """A whole home (or more) is never shown because an executable seemed to live there: a
    link an agent put in its workdir (``python -> /home/alice/bin/x``) would show all of it."""
    prefix = os.path.normpath(prefix)
    homes = {"/", "/root", "/home", os.path.normpath(env.get("HOME") or "/")}
    return prefix in homes or os.path.dirname(prefix) == "/home"


def masked_in_view(task: Task, hidden: Iterable[str]) -> tuple[str, ...]:
    """Where each of ``task.masked`` (the manifest's secret sources and env files, the
    manifest itself) shows in the sandbox: at its own path unless hidden, and again under
    each volume target that covers it. A volume naming the file itself shows it: that is the
    manifest saying so."""
    hidden = [*hidden, "/tmp", "/var/tmp", "/dev/shm", "/run"]
    shown = [task.workdir, task.env.get("CORRAL_STATE_DIR", "")]
    out: list[str] = []
    for path in task.masked:
        if not os.path.isfile(path):
            continue
        declared = [v for v in task.spec.volumes if not v.named
                    and os.path.normpath(v.source) == os.path.normpath(path)]
        if declared:
            continue
        if any(beneath.under(path, s) for s in shown if s) or not any(
                beneath.under(path, h) for h in hidden):
            out.append(path)
        for v in task.spec.volumes:
            if not v.named and beneath.under(path, v.source) and os.path.isdir(v.source):
                out.append(os.path.join(v.target, os.path.relpath(path, v.source)))
    return tuple(dict.fromkeys(out))


@cache
def binds_fds(bwrap: str) -> bool:
    """bwrap has ``--bind-fd`` (0.8.0 and later)."""
    try:
        return "--bind-fd" in subprocess.run([bwrap, "--help"], capture_output=True,
                                             text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False


def masked_files(manifest: Manifest) -> tuple[str, ...]:
    """What no sandbox shows unless a volume names it: every secret's file or env file,
    every agent's env files (another agent's credentials), and the manifest and the
    project's .env (which may hold values inline)."""
    project = manifest.project_dir
    out = [os.path.join(project, n) for n in ("corral.yaml", "corral.yml", ".env")]
    for source in manifest.secrets.values():
        out += [p for p in (source.file, source.env_file) if p]
    for agent in manifest.agents.values():
        out += [e.path for e in agent.env_file]
    return tuple(dict.fromkeys(os.path.normpath(p) for p in out))
