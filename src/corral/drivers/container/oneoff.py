"""``corral exec`` of a container agent: the engine's ``exec`` in its first running instance.
The agent's environment is inside the container, not on this host, so the engine's CLI is
exec'd in corral's place with corral's own environment, and the container gives the command
its own. The instance is found by its labels, from the engine: no daemon needed."""

from __future__ import annotations

import sys

from corral.drivers.base import Launch, Task
from corral.drivers.container.engine import Engine
from corral.drivers.container.runargs import container_name
from corral.errors import CorralError
from corral.manifest.spec import instance_name


async def enter(engine: Engine, task: Task, argv: list[str]) -> Launch:
    for index in range(1, task.spec.replicas + 1):
        instance = instance_name(task.agent, index)
        found = await engine.containers({"corral.project": task.project,
                                         "corral.instance": instance})
        if any(c["state"] == "running" for c in found):
            tty = ["-t"] if sys.stdin.isatty() and sys.stdout.isatty() else []
            name = container_name(task.project, instance)
            return Launch(argv=[engine.binary, "exec", "-i", *tty, name, *argv])
    raise CorralError(f"agent {task.agent} has no running container",
                      "start it first with 'corral up -d'")
