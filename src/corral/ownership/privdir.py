"""Private directories the supervisor makes in places others can write (``/dev/shm``, /tmp).

A path under a world-writable dir, or one an agent owns, is untrusted: another user may have
made it first (a symlink to ``/etc``, a dir of theirs with mode 0777), and an agent may swap a
component of its own tree between two starts. So nothing here resolves a path by name: each
component is opened relative to its parent's descriptor with ``O_NOFOLLOW``, checked with
``fstat``, and changed through the descriptor (``fchown``, ``fchmod``), never by path again.

A stale dir is fixed when it belongs to corral or to the identity it is being made for (an
older corral made it 0755: it becomes 0700); it is refused when anyone else owns it, or it is
a symlink or not a directory (one line naming it and the fix: remove it).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeDir(OSError):
    """A component is a symlink, not a dir, or owned by a stranger. ``str()``: one line."""

    def __str__(self) -> str:
        return str(self.strerror)


def open_dir(parent: int | None, name: str, *, mode: int, uid: int, gid: int,
             shown: str) -> int:
    """The fd of dir ``name`` under ``parent`` (an fd; None: ``name`` is absolute and trusted
    up to its last component), made ``mode`` and owned by ``uid:gid``. ``shown``: the path
    for messages. The caller closes the fd."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, mode, dir_fd=parent)
    try:
        fd = os.open(name, _DIR, dir_fd=parent)
    except OSError as exc:  # ELOOP: a symlink; ENOTDIR: a file
        raise UnsafeDir(exc.errno, f"{shown} is not a directory of corral's "
                                   f"({exc.strerror}): remove it") from None
    try:
        st = os.fstat(fd)
        if st.st_uid not in (os.geteuid(), uid):
            raise UnsafeDir(0, f"{shown} belongs to uid {st.st_uid}, not to corral "
                               f"(uid {os.geteuid()}): remove it")
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_path(base: str, parts: list[tuple[str, int, int, int]]) -> int:
    """Open (making them) ``base/part/part...``, each part ``(name, mode, uid, gid)``; ``base``
    is a trusted dir (``/dev/shm``). Returns the last dir's fd."""
    fd = os.open(base, _DIR)
    shown = base
    try:
        for name, mode, uid, gid in parts:
            shown = os.path.join(shown, name)
            inner = open_dir(fd, name, mode=mode, uid=uid, gid=gid, shown=shown)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def empty(fd: int) -> None:
    """Remove the files of the dir ``fd`` (an agent's secrets dir holds files only; a dir or
    anything else an agent put there is removed too, without following anything)."""
    for entry in os.listdir(fd):
        try:
            os.unlink(entry, dir_fd=fd)
        except IsADirectoryError:
            inner = os.open(entry, _DIR, dir_fd=fd)
            try:
                empty(inner)
            finally:
                os.close(inner)
            os.rmdir(entry, dir_fd=fd)
        except FileNotFoundError:
            pass


def write_files(fd: int, values: Mapping[str, str], *, uid: int, gid: int) -> None:
    """One file per value in the dir ``fd``, mode 0400, owned by ``uid:gid``."""
    for name, value in values.items():
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o400, dir_fd=fd)
        with os.fdopen(out, "w", encoding="utf-8") as f:
            if (uid, gid) != (os.geteuid(), os.getegid()):
                os.fchown(f.fileno(), uid, gid)
            f.write(value)
