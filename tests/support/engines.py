"""Real container engines for the tests: Podman as installed, Docker's daemon started here.

The base image is made by the project's own bootstrap (``corral.drivers.container.image``); its root
file system tarball is cached under ``~/.cache/corral`` (or ``$CORRAL_CACHE``), so only the
first session on a machine runs debootstrap. A dockerd this module starts is stopped by its PID
at the end of the session; one that was already running is used and left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from corral.drivers.container import image
from corral.drivers.container.engine import Engine

# the one base image the engine fixtures make (``corral image bootstrap --python``): every
# container test builds FROM or runs this tag, never an image an earlier run left behind
IMAGE = image.base_image(python=True).tag


def _works(engine: Engine, tag: str) -> str:
    """'' when ``engine`` runs a container of ``tag``, else its own error."""
    proc = subprocess.run(engine.argv("run", "--rm", "--network", "none", tag, "true"),
                          capture_output=True, text=True, timeout=60)
    return "" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


TEST_PROJECTS = ("t", "ct", "ctport", "ctstale")  # the contract tests' project names


def _tidy(engine: Engine) -> None:
    """Project networks outlive their containers (as compose's do until `down`)."""
    for project in TEST_PROJECTS:
        subprocess.run(engine.argv("network", "rm", f"corral-{project}"), capture_output=True)


def _bootstrap(engine: Engine) -> str:
    try:
        return asyncio.run(image.bootstrap(engine, python=True))
    except Exception as exc:  # shown as the skip reason
        pytest.skip(f"{engine.name}: cannot bootstrap the base image: {exc}")


@contextlib.contextmanager
def podman() -> Iterator[Engine]:
    found = shutil.which("podman")
    if found is None:
        pytest.skip("podman is not installed: scripts/install.sh --test installs it")
    engine = Engine("podman", found)
    tag = _bootstrap(engine)
    why = _works(engine, tag)
    if why:
        pytest.skip(f"podman cannot run a container here: {why} (run `corral doctor`)")
    try:
        yield engine
    finally:
        _tidy(engine)


def _docker_answers(binary: str) -> bool:
    try:
        return subprocess.run([binary, "version", "--format", "{{.Server.Version}}"],
                              capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@contextlib.contextmanager
def docker() -> Iterator[Engine]:
    binary, daemon = shutil.which("docker"), shutil.which("dockerd")
    if binary is None or daemon is None:
        pytest.skip("docker.io is not installed: scripts/install.sh --test installs it")
    started: subprocess.Popen[bytes] | None = None
    try:
        if not _docker_answers(binary):
            os.makedirs(image.cache_dir(), exist_ok=True)
            with open(os.path.join(image.cache_dir(), "dockerd-test.log"), "ab") as log:
                started = subprocess.Popen([daemon], stdout=log, stderr=log,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 30
            while not _docker_answers(binary):
                if started.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"dockerd did not start (see {image.cache_dir()}"
                                "/dockerd-test.log)")
                time.sleep(0.2)
        engine = Engine("docker", binary)
        tag = _bootstrap(engine)
        why = _works(engine, tag)
        if why:
            pytest.skip(f"docker cannot run a container here: {why} (run `corral doctor`)")
        try:
            yield engine
        finally:
            _tidy(engine)
    finally:
        if started is not None:
            started.send_signal(signal.SIGTERM)
            try:
                started.wait(30)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait()


ENGINES = {"podman": podman, "docker": docker}
