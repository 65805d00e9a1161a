"""What a container start needs to exist in the engine, asked once per driver (one per daemon,
so per fleet) and known from then on: the agent's image (a ref, or the tag a build made), the
project network, the named volumes, and that the command is in the image.

What is known may go stale behind corral's back (the network or a volume removed by hand, the
image too): a refused create ``forget``s what it relied on, and the start asks again, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from corral.drivers.base import Task, driver_errors
from corral.drivers.container import runargs
from corral.drivers.container.transport.base import Ops
from corral.errors import CorralError


class Prereqs:
    def __init__(self) -> None:
        self.images: dict[str, str] = {}  # inputs digest -> image tag
        self.present: set[tuple[str, str]] = set()  # (engine, image ref) known to exist
        self.pulled: set[tuple[str, str]] = set()  # (engine, image ref) pulled by this driver
        self.networks: set[tuple[str, str]] = set()  # (engine, network) known to exist
        self.volumes: set[tuple[str, str]] = set()  # (engine, volume) known to exist
        self.commands: set[tuple[str, str, str]] = set()  # (engine, image, argv0) found
        self._locks: dict[str, asyncio.Lock] = {}

    async def built(self, key: str, build: Callable[[], Awaitable[str]]) -> str:
        """The image built from inputs of digest ``key``: built once, however many starts
        ask for it at the same time."""
        if key in self.images:
            return self.images[key]
        async with self._locks.setdefault(key, asyncio.Lock()):
            if key not in self.images:
                self.images[key] = await build()
        return self.images[key]

    def lock(self, key: str) -> asyncio.Lock:
        """One lock a key: what many starts ask for at once is done once (a pull)."""
        return self._locks.setdefault(key, asyncio.Lock())

    async def network(self, ops: Ops, task: Task, spec: runargs.RunSpec) -> None:
        """The project network, made on first use; known to exist from then on."""
        if spec.alias is None or (ops.engine.name, spec.network) in self.networks:
            return
        with driver_errors(task):
            await ops.ensure_network(spec.network, task.project)
        self.networks.add((ops.engine.name, spec.network))

    async def named_volumes(self, ops: Ops, task: Task, spec: runargs.RunSpec) -> None:
        """Made here rather than implicitly by the create: the label lets ``corral down
        --volumes`` find exactly this project's volumes (a name prefix would also match a
        project whose name extends this one's)."""
        for name in spec.volumes:
            if (ops.engine.name, name) in self.volumes:
                continue
            with driver_errors(task):
                await ops.ensure_volume(name, task.project)
            self.volumes.add((ops.engine.name, name))

    def knows_command(self, engine: str, image: str, exe: str) -> bool:
        return (engine, image, exe) in self.commands

    async def command_missing(self, ops: Ops, image: str, task: Task,
                              container: str | None) -> bool:
        """With an init, a missing command is only the init's exit 127 after a successful
        start: look it up in the image too (once per image and command), so it is the same
        clear start error as at every other level. Not knowing (no shell in the image, an
        engine error) is not missing: the start will tell."""
        exe = task.spec.argv[0]
        try:
            missing = await ops.command_missing(image, exe, container)
        except CorralError:
            missing = False
        if not missing:
            self.commands.add((ops.engine.name, image, exe))
        return missing

    def forget(self, engine: str, spec: runargs.RunSpec) -> bool:
        """A create was refused: forget the network, volumes and image it relied on. False:
        nothing was known, so asking again would change nothing."""
        known = {(engine, spec.network), *((engine, v) for v in spec.volumes)}
        if not (known & (self.networks | self.volumes) or (engine, spec.image) in self.present):
            return False
        self.networks -= known
        self.volumes -= known
        self.present.discard((engine, spec.image))
        return True
