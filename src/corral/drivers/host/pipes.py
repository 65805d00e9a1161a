"""Reading an agent's output pipe so that a daemon killed at any instant loses no byte.

A plain ``read`` takes bytes out of the pipe before they are in the log: a SIGKILL between
the two (the daemon preempted on a busy machine, say) loses them for good, and the next daemon
re-adopting the agent never sees them. Here a chunk is first copied with ``tee(2)`` (the bytes
stay in the pipe), handed to the log, and only then taken out with ``splice(2)`` into
/dev/null (no copy). A kill before the log write loses nothing: the next daemon reads the same
bytes. A kill in the few microseconds between the log write and the splice shows those bytes
twice; a duplicate is the lesser harm, and that window is two syscalls wide where the old one
was a whole parse-and-encode pass.

``tee`` has no Python binding; it is called through libc (ctypes is in the daemon already).
Where it is missing (not Linux, no libc), ``read`` is used as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
from collections.abc import Callable

_F_SETPIPE_SZ = 1031
_SPLICE_F_NONBLOCK = 2


def _libc_tee() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.tee
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
    fn.restype = ctypes.c_ssize_t
    return fn


class CommittedReader:
    """``read(fd)`` → bytes still in the pipe; ``commit(fd, n)`` takes them out. One per
    driver: a scratch pipe (as large as a read) receives each tee and is emptied at once;
    it and /dev/null stay open for the driver's (the daemon's) life."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._tee = _libc_tee() if hasattr(os, "splice") else None
        self._scratch: tuple[int, int] | None = None
        self._null = -1

    @property
    def safe(self) -> bool:
        return self._tee is not None

    def _open(self) -> tuple[int, int]:
        if self._scratch is None:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            with contextlib.suppress(OSError):
                fcntl.fcntl(w, _F_SETPIPE_SZ, self.size)
            self._scratch = (r, w)
            self._null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        return self._scratch

    def read(self, fd: int) -> bytes:
        """Up to ``size`` bytes of ``fd``, left in it; b"" at end of file; raises
        BlockingIOError when there is nothing yet."""
        if self._tee is None:
            return os.read(fd, self.size)
        r, w = self._open()
        n = self._tee(fd, w, self.size, _SPLICE_F_NONBLOCK)
        if n < 0:
            err = ctypes.get_errno()
            if err == errno.EAGAIN:
                raise BlockingIOError(err, os.strerror(err))
            if err == errno.EINVAL:  # not a pipe after all: read, as before
                self._tee = None
                return os.read(fd, self.size)
            raise OSError(err, os.strerror(err))
        if n == 0:
            return b""  # no writer left: end of file
        parts = []
        while n > 0:
            part = os.read(r, n)
            parts.append(part)
            n -= len(part)
        return b"".join(parts)

    def commit(self, fd: int, n: int) -> None:
        """Take out the ``n`` bytes just read: they are in the log now."""
        if self._tee is None:
            return
        while n > 0:
            moved = os.splice(fd, self._null, n, flags=_SPLICE_F_NONBLOCK)
            if moved <= 0:
                break
            n -= moved
