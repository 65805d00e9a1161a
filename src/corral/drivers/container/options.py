"""The ``container:`` block, declared by the container driver (``ContainerDriver.blocks``) and
decoded for it by the daemon, so ``task.spec.options["container"]`` arrives typed."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Literal

from corral.lean.record import Record, record
from corral.manifest.rules import FilePath, Ports
from corral.manifest.spec import Agent


@record(kw_only=True)
class ContainerOptions(Record):
    """A container (Podman preferred, Docker supported): an ``image`` run as is (pulled from
    its registry as ``pull_policy`` says: compose's missing, always, never), or a build of
    ``build`` (relative to the workdir) with ``file`` (default: its Containerfile or
    Dockerfile, else one generated from its requirements on ``base``)."""

    __pydantic_config__ = {"extra": "forbid"}
    engine: Literal["auto", "podman", "docker"] = "auto"
    image: str | None = None
    pull_policy: Literal["missing", "always", "never"] = "missing"
    build: Annotated[str, FilePath()] | None = None
    file: Annotated[str, FilePath()] | None = None
    base: str | None = None
    # published on 127.0.0.1: "8080" (same number) or "18080:80" (host:container)
    ports: Ports = field(default_factory=list)


blocks: dict[str, type[Record]] = {"container": ContainerOptions}


def container_options(agent: Agent) -> ContainerOptions:
    """The agent's block, or the defaults when it wrote none."""
    found: ContainerOptions | None = agent.options.get("container")
    return found if found is not None else ContainerOptions()


def runs_without_command(agent: Agent) -> bool:
    """An image (pulled, or built from the agent's own Containerfile) has a CMD of its own,
    which runs when the agent gives no ``command``; compose services often rely on it."""
    options = container_options(agent)
    return options.image is not None or options.build is not None
