"""Session-wide real components every tier shares: the VM guest and the container engines
(see ``tests/support/engines.py``), each built or started once per session by corral itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from corral.drivers.container.engine import Engine
from tests.support import agentusers, engines, rootless


@pytest.fixture(scope="session")
def podman_engine() -> Iterator[Engine]:
    with engines.podman() as engine:
        yield engine


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    with engines.docker() as engine:
        yield engine


@pytest.fixture(scope="session")
def rootless_user(podman_engine: Engine) -> Iterator[rootless.User]:
    """A non-root user with rootless Podman and root's base image (``support/rootless.py``)."""
    with rootless.rootless_user(podman_engine) as user:
        yield user


@pytest.fixture(scope="session")
def agent_users() -> Iterator[tuple[Any, ...]]:
    """Two unprivileged users for agents' ``user:`` (``tests/support/agentusers.py``)."""
    with agentusers.agent_users() as users:
        yield users


@pytest.fixture(scope="session")
def vm_guest() -> str:
    """The bootstrapped guest (cached under ~/.cache/corral, so later runs take no time);
    skipped, with the reason, where QEMU or Debian's packages are not at hand."""
    from corral.drivers.vm import guest, qemu
    from corral.errors import DriverError

    if qemu.find() is None:
        pytest.skip(f"{qemu.QEMU} not installed ({qemu.INSTALL})")
    try:
        built = guest.bootstrap()
    except DriverError as exc:
        pytest.skip(f"cannot bootstrap a VM guest: {exc}")
    asyncio.run(qemu.probe_kvm())  # once per session, not inside a timed test
    return built.path


@pytest.fixture(scope="session")
def vm_python_root(vm_guest: str) -> str:
    """The Debian root with python3 for ``vm.python`` agents (debootstrap, about a minute
    once, then cached under ~/.cache/corral/rootfs)."""
    import shutil

    from corral.drivers.vm import rootfs
    from corral.errors import DriverError

    if rootfs.find() is None and shutil.which("debootstrap") is None:
        pytest.skip("debootstrap not installed (apt-get install debootstrap)")
    try:
        return rootfs.build()
    except DriverError as exc:
        pytest.skip(f"cannot build the Python root: {exc}")
