"""Base images without a registry: a minimal Debian root built by debootstrap from Debian's own
packages, tar-imported into the engine.

Two images: ``localhost/corral-base:SUITE`` (``--variant=minbase``) and, with ``python=True``,
``localhost/corral-python:SUITE`` (also python3 and python3-venv: what the generated
Containerfiles build a venv with). The root file system tarball is cached under
``~/.cache/corral/images/<digest>.tar`` where the digest covers everything debootstrap is given
(suite, variant, packages, mirror), so a second bootstrap is an image lookup (instant) or, for
another engine or after ``rmi``, only an import (seconds); debootstrap itself (~45 s) runs once
per host. The tarball is written next to its final name and renamed, so an interrupted bootstrap
never leaves a half tarball that a later run would trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from corral.drivers.container.engine import Engine
from corral.drivers.host import scratch
from corral.errors import CorralError

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
_SCHEME = "corral-image/1"
BOOTSTRAP_FIX = ("run `corral image bootstrap --python` "
                 "(needs debootstrap: apt-get install debootstrap)")

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class BaseImage:
    tag: str
    packages: tuple[str, ...]
    suite: str = SUITE
    mirror: str = MIRROR

    def digest(self) -> str:
        doc = {"scheme": _SCHEME, "suite": self.suite, "mirror": self.mirror,
               "variant": "minbase", "packages": sorted(self.packages)}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def base_image(*, python: bool, suite: str = SUITE) -> BaseImage:
    if python:
        return BaseImage(f"localhost/corral-python:{suite}", ("python3", "python3-venv"), suite)
    return BaseImage(f"localhost/corral-base:{suite}", (), suite)


def cache_dir() -> str:
    """``$CORRAL_CACHE`` or ``$XDG_CACHE_HOME/corral``: shared by every project on the host,
    since a base image does not depend on any project."""
    explicit = os.environ.get("CORRAL_CACHE")
    if explicit:
        return explicit
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "corral")


async def _stream(argv: list[str], progress: Progress | None) -> tuple[int, list[str]]:
    """Run it in a session of its own (debootstrap's chrooted children die with it)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    tail: list[str] = []
    assert proc.stdout is not None
    try:
        async for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            tail = [*tail[-19:], line]
            if progress is not None and line:
                progress(line)
        return await proc.wait(), tail
    except asyncio.CancelledError:
        if proc.returncode is None:
            scratch.kill_session(proc.pid)
            await proc.wait()
        raise


async def rootfs_tarball(image: BaseImage, *, progress: Progress | None = None) -> str:
    """The cached root file system tarball, built by debootstrap on a miss."""
    images = os.path.join(cache_dir(), "images")
    os.makedirs(images, exist_ok=True)
    final = os.path.join(images, f"{image.digest()[:16]}.tar")
    if os.path.exists(final):
        return final
    debootstrap = shutil.which("debootstrap") or shutil.which(
        "debootstrap", path="/usr/sbin:/sbin")
    if debootstrap is None:
        raise CorralError("debootstrap is not installed: it builds the base image from Debian's "
                          "packages", "apt-get install debootstrap")
    root = tempfile.mkdtemp(prefix="rootfs-", dir=images)
    try:
        argv = [debootstrap, "--variant=minbase"]
        if image.packages:
            argv.append("--include=" + ",".join(image.packages))
        argv += [image.suite, root, image.mirror]
        code, tail = await _stream(argv, progress)
        if code != 0:
            why = next((ln for ln in reversed(tail) if ln.startswith(("E:", "W:"))),
                       tail[-1] if tail else f"exit status {code}")
            raise CorralError(f"debootstrap failed: {why}",
                              "check the mirror is reachable and you are root")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            path = os.path.join(root, junk)
            for name in os.listdir(path) if os.path.isdir(path) else []:
                full = os.path.join(path, name)
                if os.path.isfile(full):
                    os.unlink(full)
        partial = final + ".part"
        code, tail = await _stream(["tar", "--numeric-owner", "-C", root, "-cf", partial, "."],
                                   None)
        if code != 0:
            raise CorralError(f"cannot pack the base image: {tail[-1] if tail else code}",
                              f"check free space under {images}")
        os.replace(partial, final)
        return final
    finally:  # and a killed debootstrap's /proc mounts inside it
        await asyncio.to_thread(scratch.remove, root)


async def bootstrap(engine: Engine, *, python: bool, suite: str = SUITE,
                    progress: Progress | None = None, force: bool = False) -> str:
    """Make the base image present in ``engine``; returns its tag. Instant when it is."""
    image = base_image(python=python, suite=suite)
    if not force and await engine.image_exists(image.tag):
        return image.tag
    tarball = await rootfs_tarball(image, progress=progress)
    if progress is not None:
        progress(f"importing {tarball} into {engine.name} as {image.tag}")
    got = await engine.run("import", "--change", "CMD [\"/bin/bash\"]", "--change",
                           f"LABEL corral.base={image.digest()[:16]}", tarball, image.tag)
    if not got.ok:
        raise CorralError(f"{engine.name} import failed: {got.error_line()}",
                          "run `corral doctor` for the engine's settings")
    return image.tag


def remove_cached(image: BaseImage) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(cache_dir(), "images", f"{image.digest()[:16]}.tar"))
