"""A placed instance's file secrets on its node (``secrets: [{source, target}]``): the host's
secrets dir is not there, so the files travel in the start call's arguments (never a
``runtime_env``) and the node actor writes them into a private dir of their own, kept in
memory where the node has ``/dev/shm`` (else its temp dir), removed when the run ends.

Plain Python, shipped by value with ``node`` (and ``privdir``, whose ``write_files`` the
host's secrets dirs are written with too).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping

from corral.ownership.privdir import write_files

VARIABLE = "CORRAL_SECRETS_DIR"


def read(env: Mapping[str, str]) -> dict[str, str] | None:
    """On the host: the files of the instance's secrets dir (``VARIABLE`` in its
    environment), by name; None when it has none."""
    where = env.get(VARIABLE)
    if not where:
        return None
    out = {}
    for name in sorted(os.listdir(where)):
        fd = os.open(os.path.join(where, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, encoding="utf-8") as f:
            out[name] = f.read()
    return out


def write(files: dict[str, str]) -> str:
    """On the node: a new 0700 dir holding each file (0400, created, never followed)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    for name in files:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"a secret file's name is one path part: {name!r}")
    where = tempfile.mkdtemp(prefix="corral-secrets-", dir=base)
    try:
        fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            write_files(fd, files, uid=os.geteuid(), gid=os.getegid())
        finally:
            os.close(fd)
    except BaseException:
        remove(where)
        raise
    return where


def remove(where: str | None) -> None:
    if where:
        shutil.rmtree(where, ignore_errors=True)
