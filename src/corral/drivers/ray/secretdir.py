"""A placed instance's file secrets on its node (``secrets: [{source, target}]``): the host's
secrets dir is not there, so the files travel in the start call's arguments (never a
``runtime_env``) and the node actor writes them into a private dir of their own, kept in
memory where the node has ``/dev/shm`` (else its temp dir), removed when the run ends.

Plain Python, shipped by value with ``node``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping

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
    where = tempfile.mkdtemp(prefix="corral-secrets-", dir=base)
    try:
        for name, value in files.items():
            if "/" in name or name in ("", ".", ".."):
                raise ValueError(f"a secret file's name is one path part: {name!r}")
            fd = os.open(os.path.join(where, name),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o400)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(value)
    except BaseException:
        remove(where)
        raise
    return where


def remove(where: str | None) -> None:
    if where:
        shutil.rmtree(where, ignore_errors=True)
