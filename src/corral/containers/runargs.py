"""What ``run -d`` is given for an instance: names, network, mounts, limits, ports, env.

Kept apart from the driver so the lifecycle (start, wait, stop, recover) reads on its own.
Names follow compose's: ``corral-<project>`` for the network, ``corral-<project>-<volume>``
for named volumes, ``corral-<project>-<instance>`` for containers.
"""

from __future__ import annotations

import os
import re

from corral.containers.engine import Engine
from corral.drivers.base import Task
from corral.errors import DriverError

SECRETS_IN_CONTAINER = "/run/secrets"
DATA_IN_CONTAINER = "/var/lib/corral/data"  # the agent's CORRAL_STATE_DIR, kept on the host
# Host settings that mean nothing inside an image (its own PATH comes from the image); kept
# when the agent's own env sets them.
_HOST_ONLY = {"PATH", "HOME", "PWD", "OLDPWD", "SHLVL", "TMPDIR", "VIRTUAL_ENV", "PYTHONHOME",
              "PYTHONPATH", "LD_LIBRARY_PATH", "LD_PRELOAD", "PYENV_ROOT", "PYENV_VERSION"}
_NAME = re.compile(r"[^a-zA-Z0-9_.-]+")


def _name(*parts: str) -> str:
    return _NAME.sub("-", "-".join(parts)).strip("-.")


def network_name(project: str) -> str:
    return _name("corral", project)


def volume_name(project: str, volume: str) -> str:
    return _name("corral", project, volume)


def container_name(project: str, instance: str) -> str:
    return _name("corral", project, instance)


async def network(eng: Engine, task: Task, known: set[tuple[str, str]]) -> list[str]:
    """``--network``: none, host, or the project network with the agent's name as alias
    (created on first use; ``known`` remembers which exist)."""
    mode = task.spec.network
    if mode in ("none", "host"):
        return ["--network", mode]
    net = network_name(task.project)
    if (eng.name, net) not in known:
        if not (await eng.run("network", "inspect", net)).ok:
            got = await eng.run("network", "create", "--label",
                                f"corral.project={task.project}", net)
            if not got.ok and "exists" not in got.error_line():
                raise DriverError(f"agents.{task.agent}: cannot create network {net}: "
                                  f"{eng.name} says: {got.error_line()}",
                                  "run `corral doctor`")
        known.add((eng.name, net))
    return ["--network", net, "--network-alias", task.agent]


async def mounts(eng: Engine, task: Task) -> list[str]:
    """``-v`` for volumes (named ones as engine volumes), secrets and the data dir."""
    args: list[str] = []
    for v in task.spec.volumes:
        ro = ":ro" if v.read_only else ""
        if v.named:
            name = volume_name(task.project, os.path.basename(v.source))
            await _volume(eng, name, task)
            args += ["-v", f"{name}:{v.target}{ro}"]
            continue
        if not os.path.exists(v.source):
            raise DriverError(f"agents.{task.agent}.volumes: {v.source} does not exist",
                              "create it, or use a named volume (NAME:/target)")
        args += ["-v", f"{v.source}:{v.target}{ro}"]
    secrets = task.env.get("CORRAL_SECRETS_DIR")
    if secrets:
        args += ["-v", f"{secrets}:{SECRETS_IN_CONTAINER}:ro"]
    data = task.env.get("CORRAL_STATE_DIR")
    if data:
        os.makedirs(data, exist_ok=True)
        args += ["-v", f"{data}:{DATA_IN_CONTAINER}"]
    return args


async def _volume(eng: Engine, name: str, task: Task) -> None:
    """Created here rather than implicitly by ``run -v``: the label lets ``corral down
    --volumes`` find exactly this project's volumes (a name prefix would also match a
    project whose name extends this one's)."""
    if (await eng.run("volume", "inspect", name)).ok:
        return
    got = await eng.run("volume", "create", "--label", f"corral.project={task.project}",
                        name)
    if not got.ok and "exists" not in got.error_line():
        raise DriverError(f"agents.{task.agent}: cannot create volume {name}: "
                          f"{eng.name} says: {got.error_line()}", "run `corral doctor`")


def limits(task: Task) -> list[str]:
    """The agent's ``resources`` as engine flags."""
    res = task.spec.resources
    args: list[str] = []
    if res.cpus is not None:
        args += ["--cpus", f"{res.cpus:g}"]
    if res.memory is not None:  # swap equal to memory: no swap, so the limit OOM-kills
        args += ["--memory", str(res.memory), "--memory-swap", str(res.memory)]
    if res.memory_reservation is not None:
        args += ["--memory-reservation", str(res.memory_reservation)]
    if res.pids is not None:
        args += ["--pids-limit", str(res.pids)]
    return args


def ports(published: tuple[str, ...]) -> list[str]:
    """``-p``: published on loopback unless an address is given (an agent is not exposed to
    the network by default, as at every other level)."""
    args: list[str] = []
    for port in published:
        args += ["-p", port if port.count(":") >= 2 else f"127.0.0.1:{port}"]
    return args


def env(task: Task) -> tuple[list[str], dict[str, str]]:
    """``-e NAME`` arguments and the engine CLI's environment that carries the values."""
    own = task.spec.env
    inner = {k: v for k, v in task.env.items() if k not in _HOST_ONLY or k in own}
    if inner.get("CORRAL_SECRETS_DIR"):
        inner["CORRAL_SECRETS_DIR"] = SECRETS_IN_CONTAINER
    if inner.get("CORRAL_STATE_DIR"):
        inner["CORRAL_STATE_DIR"] = DATA_IN_CONTAINER
    cli_env = {**inner, "PATH": os.environ.get("PATH", os.defpath),
               "HOME": os.environ.get("HOME", "/root")}
    for key in ("XDG_RUNTIME_DIR", "DOCKER_HOST", "CONTAINER_HOST", "CONTAINERS_CONF"):
        if key in os.environ and key not in inner:
            cli_env[key] = os.environ[key]
    args: list[str] = []
    for key in sorted(inner):
        args += ["-e", key]
    return args, cli_env
