"""The transport choice, once per engine and process: the API when its socket answers, else
the CLI (uvicorn's ``protocols/http/auto.py`` habit: the siblings never import each other)."""

from __future__ import annotations

import os

from corral.drivers.container import service
from corral.drivers.container.engine import Engine
from corral.drivers.container.transport.api import ApiOps
from corral.drivers.container.transport.base import Ops
from corral.drivers.container.transport.cli import CliOps

_chosen: dict[tuple[str, str], Ops] = {}


async def for_engine(engine: Engine, *, start_service: bool = True) -> Ops:
    """The API when its socket answers (for Podman, once this process started its service,
    unless ``start_service`` is False), else the CLI. Chosen once per engine and process;
    chosen again when the service it used has gone."""
    key = (engine.name, engine.binary)
    ops = _chosen.get(key)
    if ops is not None and (ops.via == "cli" or service.alive(getattr(ops, "socket", ""))):
        return ops
    if os.environ.get("CORRAL_CONTAINER_API", "auto") == "cli":
        ops = CliOps(engine)
    else:
        sock = await service.socket_for(engine, start=start_service)
        ops = CliOps(engine) if sock is None else ApiOps(engine, sock, fallback=CliOps(engine))
    if ops.via == "api" or start_service:  # a CLI chosen for want of a service: ask again
        _chosen[key] = ops
    return ops
