"""Session-wide real components shared by the tiers (see ``tests/engines.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.containers.engine import Engine
from tests import engines


@pytest.fixture(scope="session")
def podman_engine() -> Iterator[Engine]:
    with engines.podman() as engine:
        yield engine


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    with engines.docker() as engine:
        yield engine
