"""A scratch root that debootstrap fills, removed again even when the build was killed.

debootstrap mounts ``/proc`` (and ``/sys``, ``devpts``) inside its target while it installs.
Killed half-way (Ctrl-C, a timeout), it leaves them mounted: ``rmtree`` then fails on every
``/proc`` file and the half-built tree stays in the cache, over live mounts of the host's
``/proc``. So the build runs in a session of its own, which is killed whole (debootstrap's
``chroot``ed dpkg and maintainer scripts with it), and what is mounted beneath the tree is
detached before the tree is removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal

_MNT_DETACH = 2


def mounts_beneath(tree: str, mountinfo: str | None = None) -> list[str]:
    """The mount points at or under ``tree``, deepest first."""
    if mountinfo is None:
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
                mountinfo = f.read()
        except OSError:
            return []
    top = os.path.realpath(tree)
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = _unescape(fields[4])
        if point == top or point.startswith(top + "/"):
            found.append(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def _unescape(path: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def kill_session(pid: int) -> None:
    """SIGKILL the session ``pid`` leads (started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def remove(tree: str) -> None:
    """Detach what is mounted beneath ``tree`` (a lazy unmount: a process still inside lets
    go when it exits), then remove the tree; what cannot be removed is left, never raised."""
    libc = ctypes.CDLL(None, use_errno=True)
    for point in mounts_beneath(tree):
        libc.umount2(point.encode(), _MNT_DETACH)  # not root: EPERM, and rmtree says no more
    shutil.rmtree(tree, ignore_errors=True)
