"""A host-process agent in the foreground: what ``corral run`` and ``corral exec`` start as
their own child, attached to the terminal, for the levels whose instance is a process on this
host (process, venv, sandbox).

It is made of the same parts the driver starts an instance from (its ``environment``,
``argv``, ``passed_fds``, ``identity``, ``hand_over`` and ``as_identity``), so a one-off runs
as the daemon's instances do: the same environment, the same view, as the same user. Only the
placement (cgroup, pipes) is left out: the terminal is its output, and it is the user's to
interrupt. Only the CLI imports this module.
"""

from __future__ import annotations

import os
import shutil

from corral.drivers.base import Launch, Task
from corral.drivers.host.recipe import Recipe
from corral.errors import CorralError


def host_launch(driver: Recipe, task: Task, argv: list[str] | None = None) -> Launch:
    """``driver``'s process for ``task`` (after ``prepare``): its command, or ``argv`` in its
    environment. The data dir exists before a sandbox's argv opens it; with an identity,
    what the agent writes becomes its own first (``ownership.identity``)."""
    os.makedirs(task.env["CORRAL_STATE_DIR"], exist_ok=True)
    env = driver.environment(task)
    command = driver.argv(task)
    fds = driver.passed_fds(task)
    os.makedirs(env["CORRAL_STATE_DIR"], exist_ok=True)
    try:
        found = shutil.which(command[0], path=env.get("PATH"))
        ident = driver.identity(task)
        if ident is not None:
            driver.hand_over(task, ident, found or command[0])
        if argv is not None:  # another command in the agent's environment: nothing to bind
            for fd in fds:
                os.close(fd)
            fds, command = [], [shutil.which(argv[0], path=env.get("PATH")) or argv[0],
                                *argv[1:]]
        elif found is None and "/" not in command[0]:
            raise CorralError(f"agents.{task.agent}: command not found: {command[0]}",
                              f"install it or fix agents.{task.agent}.command")
        if ident is not None:  # a sandbox's argv switches inside itself: unchanged here
            command, _ = driver.as_identity(ident, command, command[0])
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return Launch(argv=command, env=env, cwd=task.workdir, fds=tuple(fds))


def entering(prefix: list[str], argv: list[str]) -> Launch:
    """``argv`` run through ``prefix`` into a running instance, with the agent's environment
    (a sandbox's namespaces: ``nsenter`` and ``setpriv`` pass it on)."""
    return Launch(argv=[*prefix, *argv], agent_env=True)
