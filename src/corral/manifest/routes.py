"""The one place the manifest reaches the drivers: which driver declares which agent block.

The drivers sit above the manifest (they read its records), yet the manifest routes a block
(``container:``, a third-party ``ray:``) to the record its driver declares. Every module of
the manifest that needs a block (the daemon's decoder, the CLI's validation, hints, path
checks, the schema) asks here, and only here is ``drivers.registry`` imported, on first use,
so the seam is one import to see and to keep. Stdlib only: the daemon decodes through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _registry() -> Any:
    from corral.drivers import registry  # the seam: see the module doc

    return registry


def block(key: str) -> type | None:
    """The record of block ``key``; None when no installed driver declares it."""
    found: type | None = _registry().block(key)
    return found


def blocks() -> Mapping[str, type]:
    """Every installed driver's blocks, ``{key: record}``."""
    found: Mapping[str, type] = _registry().blocks()
    return found


def hidden() -> frozenset[str]:
    """The blocks left out of the public schema."""
    found: frozenset[str] = _registry().hidden()
    return found


def normalizers() -> list[Any]:
    """The drivers' loader hooks."""
    found: list[Any] = _registry().normalizers()
    return found


def drivers() -> list[str]:
    """The installed drivers' names that are isolation levels (not a cluster's only)."""
    found: list[str] = _registry().levels()
    return found


def runs_without_command(agent: Any) -> bool:
    """Whether the agent's level runs something of its own when ``command`` is left out (a
    container of an image: the image's CMD); asked of the isolation's driver."""
    return bool(_registry().runs_without_command(agent))


def placements() -> Mapping[str, tuple[str, ...]]:
    """The clusters agents can be placed on, each with the isolation levels it runs."""
    found: Mapping[str, tuple[str, ...]] = _registry().placements()
    return found


def unplaceable(where: str, agent: Any) -> str | None:
    """Why cluster ``where`` cannot run ``agent`` (asked of its driver); None: it can."""
    found: str | None = _registry().unplaceable(where, agent)
    return found


def shown_placements() -> list[str]:
    """The placements an error names: the test-only (hidden) ones left out."""
    return sorted(set(placements()) - hidden())
