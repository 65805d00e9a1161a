"""``corral build``, ``corral pull`` and ``corral image bootstrap``: container agents' images.

Builds and pulls run here, in the CLI, not in the daemon: they are something a user watches
(progress goes to stderr as it happens) and can interrupt, and the daemon then finds the image
present (a build cached by content) and starts at once.
"""

from __future__ import annotations

import argparse
import sys
import time

from corral.cli import project
from corral.errors import CorralError, DriverError, NotFound, UsageError

TYPE_CHECKING = False  # not typing's: every command pays for what a module imports
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any


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

    spec = manifest.agents[agent]
    name = f"{agent}.build"
    layout = StateLayout(manifest.state_dir)
    return Task(project=manifest.name, agent=agent, instance=name, index=0, spec=spec,
                workdir=spec.workdir, run_dir=layout.run(name), cache_dir=layout.cache, env={},
                project_dir=manifest.project_dir)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("build", help="build container agents' images (cached by content)")
    s.add_argument("agents", nargs="*", metavar="AGENT")
    s.set_defaults(handler=cmd_build)
    s = sub.add_parser("pull", help="pull container agents' images from their registries")
    s.add_argument("agents", nargs="*", metavar="AGENT")
    s.add_argument("--policy", choices=["always", "missing"], default="always",
                   help="always (default): pull even if present; missing: only if absent")
    s.set_defaults(handler=cmd_pull)
    s = sub.add_parser("image", help="container base images")
    image_sub = s.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    s.set_defaults(handler=cmd_image)
    s = image_sub.add_parser("bootstrap", help="build a Debian base image with debootstrap "
                                               "and import it (no registry needed)")
    s.add_argument("--python", action="store_true", help="with python3 and python3-venv")
    s.add_argument("--engine", default="auto", choices=["auto", "podman", "docker"])
    s.add_argument("--force", action="store_true", help="import again even if present")


def cmd_build(args: argparse.Namespace) -> int:
    manifest = project.load(args.file)
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
    return 5 if build_images(manifest, wanted) else 0


def build_images(manifest: Any, wanted: list[str]) -> int:
    """Build these container agents' images, one at a time, progress to stderr; how many
    failed (each said so in one line)."""
    from corral.drivers.container.driver import ContainerDriver

    driver = ContainerDriver()
    return _one_by_one(wanted, lambda name: driver.image(_task(manifest, name), _Progress(name)))


def _one_by_one(names: list[str], step: Callable[[str], Awaitable[str]]) -> int:
    """``step`` for each agent in turn (builds compete for the same CPUs, and each one's
    progress stays readable), printing ``AGENT: IMAGE (seconds)`` or the one-line error;
    how many failed (the others still went)."""
    import asyncio

    async def every() -> int:
        failed = 0
        for name in names:
            started = time.monotonic()
            try:
                ref = await step(name)
            except DriverError as exc:
                failed += 1
                print(f"corral: {exc}", file=sys.stderr)
                continue
            print(f"{name}: {ref} ({time.monotonic() - started:.1f}s)")
        return failed

    return asyncio.run(every())


def _image_agents(manifest: Any, named: list[str]) -> list[str]:
    """The agents ``corral pull`` pulls: those named, else every container agent with an
    ``image`` (but ``pull_policy: never`` ones: their image is local)."""
    from corral.drivers.container.options import container_options

    for name in named:
        if name not in manifest.agents:
            raise NotFound(f"no agent named {name!r}", "see 'corral config' for the agents")
        spec = manifest.agents[name]
        if spec.isolation != "container" or container_options(spec).image is None:
            raise UsageError(f"agent {name} has no container.image to pull",
                        "name agents with container.image (`corral build` builds the others)")
    if named:
        return named
    return [n for n, a in manifest.agents.items() if a.isolation == "container"
            and (opts := container_options(a)).image is not None
            and opts.pull_policy != "never"]


def cmd_pull(args: argparse.Namespace) -> int:
    from corral.drivers.container.driver import ContainerDriver

    manifest = project.load(args.file)
    wanted = _image_agents(manifest, args.agents)
    if not wanted:
        print("corral: no container agents with an image to pull", file=sys.stderr)
        return 0
    driver = ContainerDriver(own_service=False)
    pull = driver.pull if args.policy == "always" else driver.image
    return 5 if _one_by_one(wanted, lambda name: pull(_task(manifest, name),
                                                      _Progress(name))) else 0


def cmd_image(args: argparse.Namespace) -> int:
    import asyncio

    from corral.drivers.container import engine as engines
    from corral.drivers.container import image

    eng = engines.find(args.engine)
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"bootstrap | {line}", file=sys.stderr, flush=True)

    tag = asyncio.run(image.bootstrap(eng, python=args.python, progress=say, force=args.force))
    print(f"{tag} in {eng.name} ({time.monotonic() - started:.1f}s)")
    return 0
