"""``corral build``, ``corral image bootstrap`` and the container part of ``corral down``.

Builds run here, in the CLI, not in the daemon: a build is something a user watches (its
progress goes to stderr as it happens) and can interrupt, and the daemon then finds the image
cached by content and starts at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from corral.cli import project
from corral.errors import CorralError, DriverError


class _Progress:
    """Build output to stderr, prefixed with the agent's name as compose does."""

    def __init__(self, agent: str) -> None:
        self.agent = agent

    def feed(self, stream: str, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            print(f"{self.agent} | {line}", file=sys.stderr, flush=True)

    def eof(self, stream: str) -> None:
        pass


def _task(manifest: Any, agent: str) -> Any:
    from corral.drivers.base import Task
    from corral.paths import StateLayout

    spec = manifest.agents[agent].to_spec()  # the driver reads its decoded container block
    name = f"{agent}.build"
    layout = StateLayout(manifest.state_dir)
    return Task(project=manifest.name, agent=agent, instance=name, index=0, spec=spec,
                workdir=spec.workdir, run_dir=layout.run(name), cache_dir=layout.cache, env={},
                project_dir=manifest.project_dir)


def cmd_build(args: argparse.Namespace) -> int:
    from corral.drivers.container.driver import ContainerDriver
    from corral.manifest.loader import load

    manifest = load(project.manifest_path(args.file))
    wanted = args.agents or [n for n, a in manifest.agents.items()
                             if a.isolation == "container"]
    for name in args.agents:
        if name not in manifest.agents:
            raise CorralError(f"no agent named {name!r}", "see 'corral config' for the agents")
        if manifest.agents[name].isolation != "container":
            raise CorralError(f"agent {name} is not a container agent "
                              f"(isolation: {manifest.agents[name].isolation})",
                              "set isolation: container, or name container agents only")
    if not wanted:
        print("corral: no container agents to build", file=sys.stderr)
        return 0
    driver = ContainerDriver()
    failed = 0

    async def one(name: str) -> None:
        nonlocal failed
        started = time.monotonic()
        try:
            tag = await driver.image(_task(manifest, name), _Progress(name))
        except DriverError as exc:  # one clear line; the other agents still build
            failed += 1
            print(f"corral: {exc}", file=sys.stderr)
            return
        print(f"{name}: {tag} ({time.monotonic() - started:.1f}s)")

    async def every() -> None:
        for name in wanted:  # one at a time: builds compete for the same CPUs anyway
            await one(name)

    asyncio.run(every())
    return 5 if failed else 0


def cmd_image(args: argparse.Namespace) -> int:
    from corral.drivers.container import engine as engines
    from corral.drivers.container import image

    eng = engines.find(args.engine)
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"bootstrap | {line}", file=sys.stderr, flush=True)

    tag = asyncio.run(image.bootstrap(eng, python=args.python, progress=say, force=args.force))
    print(f"{tag} in {eng.name} ({time.monotonic() - started:.1f}s)")
    return 0


def down(manifest_file: str | None, *, volumes: bool, images: bool = False) -> list[str]:
    """Remove what is left of the project in every installed engine: containers (any state),
    the project network, with ``volumes`` its named volumes, with ``images`` the images built
    for its agents. Returns what was removed."""
    from corral.drivers.container import engine as engines
    from corral.drivers.container.build import remove_images, repository_for
    from corral.manifest.loader import load

    manifest = load(project.manifest_path(manifest_file))
    name = manifest.name
    label = f"label=corral.project={name}"

    async def clean(eng: engines.Engine) -> list[str]:
        if not (await eng.run("version", timeout=15)).ok:
            return []  # not running (a stopped dockerd): it holds nothing we can remove
        gone: list[str] = []
        for c in await eng.containers({"corral.project": name}):
            if (await eng.remove(c["id"])).ok:
                gone.append(f"{eng.name} container {c['name']}")
        nets = await eng.run("network", "ls", "-q", "--filter", label)
        for net in nets.out.decode().split():
            if (await eng.run("network", "rm", net)).ok:
                gone.append(f"{eng.name} network {net}")
        if volumes:
            vols = await eng.run("volume", "ls", "-q", "--filter", label)
            for vol in vols.out.decode().split():
                if (await eng.run("volume", "rm", "-f", vol)).ok:
                    gone.append(f"{eng.name} volume {vol}")
        if images:
            for agent in manifest.agents:
                for tag in await remove_images(eng, repository_for(name, agent)):
                    gone.append(f"{eng.name} image {tag}")
        return gone

    async def every() -> list[str]:
        found: list[str] = []
        for eng in engines.installed():
            found += await clean(eng)
        return found

    return asyncio.run(every())


def exec_in(manifest: Any, agent: str, cmd: list[str]) -> int:
    """``corral exec`` for a container agent: the engine's ``exec`` in its first running
    instance (the agent's environment is inside the container, not on this host)."""
    from corral.drivers.container.driver import ContainerDriver
    from corral.drivers.container.runargs import container_name
    from corral.manifest.model import instance_name

    task = _task(manifest, agent)
    engine = ContainerDriver().engine_for(task)
    for index in range(1, manifest.agents[agent].replicas + 1):
        name = container_name(manifest.name, instance_name(agent, index))
        running = asyncio.run(engine.containers({"corral.project": manifest.name,
                                                 "corral.instance": instance_name(agent,
                                                                                  index)}))
        if any(c["state"] == "running" for c in running):
            tty = ["-t"] if sys.stdin.isatty() and sys.stdout.isatty() else []
            os.execv(engine.binary, [engine.binary, "exec", "-i", *tty, name, *cmd])
    raise CorralError(f"agent {agent} has no running container",
                      "start it first with 'corral up -d'")


def run_once(manifest: Any, agent: str) -> int:
    """``corral run`` for a container agent: the same image and flags as the daemon's, run
    attached (``cli.local.run_attached``)."""
    from corral.cli.local import one_off_task, run_attached
    from corral.drivers.container.driver import ContainerDriver

    task = one_off_task(manifest, agent, f"{agent}.build")
    # one container: not worth a Podman service's start
    return run_attached(ContainerDriver(own_service=False), task, _Progress(agent))
