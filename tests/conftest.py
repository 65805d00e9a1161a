"""Session-wide real components every tier shares: the VM guest and the container engines
(see ``tests/support/engines.py``), each built or started once per session by corral itself."""

from __future__ import annotations

import asyncio
import subprocess
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from corral.drivers.container.engine import Engine
from tests.support import agentusers, engines, lambda_runtime, moto, raycluster, rootless


def _popens_name_their_maker() -> None:
    """A Popen finalized unwaited warns "subprocess N is still running" in whichever test
    happens to run at the next garbage collection, far from the code that forgot it (seen
    rarely in tests/unit after the e2e tier). Each Popen of the test process keeps where it
    was made, and that warning names it."""
    made, finalized = subprocess.Popen.__init__, subprocess.Popen.__del__

    def init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        self._corral_made = traceback.extract_stack(limit=8)[:-1]  # type: ignore[attr-defined]
        made(self, *args, **kwargs)

    def final(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_child_created", False) and self.returncode is None:
            where = "".join(traceback.format_list(getattr(self, "_corral_made", [])))
            warnings.warn(f"subprocess {self.pid} {self.args!r} was never waited for; "
                          f"made at:\n{where}", ResourceWarning, stacklevel=1)
        finalized(self, *args, **kwargs)

    subprocess.Popen.__init__ = init  # type: ignore[method-assign]
    subprocess.Popen.__del__ = final  # type: ignore[method-assign]


_popens_name_their_maker()


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
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[raycluster.Cluster]:
    """A real Ray head and a second worker node on loopback (``tests/support/raycluster.py``),
    stopped by their PIDs at the end; skipped, with the reason, where Ray is not installed."""
    with raycluster.cluster(tmp_path_factory.mktemp("ray")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def aws_account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[moto.Account]:
    """A real ``moto_server`` on 127.0.0.1 with IAM enforced, an account made in it
    (``tests/support/moto.py``), stopped by its PID at the end; skipped, with the reason,
    where moto[server] is not installed."""
    with moto.moto_server(tmp_path_factory.mktemp("moto")) as account:
        yield account


@pytest.fixture(scope="session")
def aws_lambda_account(tmp_path_factory: pytest.TempPathFactory,
                       docker_engine: Engine) -> Iterator[moto.Account]:
    """A ``moto_server`` like ``aws_account`` whose Lambda invocations really execute: in a
    container of a Python runtime image built here from the bootstrapped base image
    (``tests/support/lambda_runtime.py``), on the docker daemon ``docker_engine`` started."""
    image = lambda_runtime.build(docker_engine)
    with moto.moto_server(tmp_path_factory.mktemp("moto-lambda"), lambda_image=image) as account:
        yield account


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
