"""What a project leaves in the container engines once its instances are gone (``corral
down``): the project network outlives its containers, and named volumes and built images
outlive the fleet unless asked for. Each is found by the project's label, never by a name
prefix (a project whose name extends this one's is left alone)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from corral.drivers.container import engine as engines
from corral.drivers.container.build import remove_images, repository_for


def remove(name: str, agents: Iterable[str], *, volumes: bool, images: bool = False
           ) -> list[str]:
    """Remove what is left of project ``name`` in every installed engine: containers (any
    state), the project network, with ``volumes`` its named volumes, with ``images`` the
    images built for its ``agents``. Returns what was removed."""
    label = f"label=corral.project={name}"
    agents = tuple(agents)  # once per engine

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
            for agent in agents:
                for tag in await remove_images(eng, repository_for(name, agent)):
                    gone.append(f"{eng.name} image {tag}")
        return gone

    async def every() -> list[str]:
        found: list[str] = []
        for eng in engines.installed():
            found += await clean(eng)
        return found

    return asyncio.run(every())
