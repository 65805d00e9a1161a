"""The ``vm:`` block, declared by the vm driver (``VmDriver.blocks``) and decoded for it by the
daemon, so ``task.spec.options["vm"]`` arrives typed."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated

from corral.lean.record import Record, record
from corral.manifest.rules import Duration, FilePath, Ports
from corral.manifest.spec import Agent


@record(kw_only=True)
class VmOptions(Record):
    """A QEMU guest (``corral vm bootstrap`` builds the default one)."""

    __pydantic_config__ = {"extra": "forbid"}
    guest: Annotated[str, FilePath()] | None = None  # a bootstrapped guest; default: cached
    # guest TCP ports reachable on the host at 127.0.0.1: 8080, or "18080:80" (host:guest)
    ports: Ports = field(default_factory=list)
    boot_timeout: Duration = 60.0
    python: bool = False  # run in the shared Debian root that has python3


blocks: dict[str, type[Record]] = {"vm": VmOptions}


def vm_block(agent: Agent) -> VmOptions:
    """The agent's block, or the defaults when it wrote none."""
    found: VmOptions | None = agent.options.get("vm")
    return found if found is not None else VmOptions()
