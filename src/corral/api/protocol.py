"""The fleet protocol: what can be asked of a fleet, whoever runs it.

Two ends implement it: ``Client`` talks to the project's daemon over its Unix socket, and
``LocalFleet`` runs a supervisor inside this process (scripts, notebooks, tests). Both speak
the routes of ``api.server.Api`` through ``api.calls.FleetCalls``, so a script written against
one runs unchanged against the other; only the transport (``request`` and ``lines``) differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # what manifest.loader.load returns is applied as it is
    from corral.api.calls import Loaded


class Fleet(Protocol):
    """The operations; each is one route of the daemon's API (see /openapi.json)."""

    def status(self) -> dict[str, Any]: ...
    def instances(self) -> list[dict[str, Any]]: ...
    def apply(self, manifest: dict[str, Any] | Loaded,
              timeout: float | None = None) -> dict[str, list[str]]: ...
    def wait(self, timeout: float = 60.0,
             names: list[str] | None = None) -> dict[str, Any]: ...
    def start(self, names: list[str] | None = None) -> list[str]: ...
    def stop(self, names: list[str] | None = None) -> list[str]: ...
    def restart(self, names: list[str] | None = None) -> list[str]: ...
    def scale(self, agent: str, replicas: int) -> dict[str, list[str]]: ...
    def down(self) -> list[str]: ...
    def exec_spec(self, agent: str) -> dict[str, Any]: ...
    def logs(self, agents: list[str] | None = None, **filters: Any) -> list[dict[str, Any]]: ...
    def events(self, *, logs: bool = False,
               agents: list[str] | None = None) -> Iterator[dict[str, Any]]: ...
    def metrics(self) -> str: ...


if TYPE_CHECKING:  # mypy proves that both ends implement the protocol
    from corral.api.client import Client
    from corral.api.local import LocalFleet

    def _both_ends(daemon: Client, local: LocalFleet) -> tuple[Fleet, Fleet]:
        return daemon, local
