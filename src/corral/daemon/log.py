"""``daemon.log`` rotated by size, while it is the daemon's own stdout and stderr.

The CLI starts the daemon with both streams on ``daemon.log`` (so a crash at start, a
traceback from C, anything, lands there). A logging handler would rotate only what goes
through it; instead ``sys.stdout``/``sys.stderr`` become one writer that checks the file's
size after each write and, past ``max_bytes``, renames ``daemon.log`` to ``daemon.log.1``
(``.1`` to ``.2``, and so on, ``keep`` files) and ``dup2``s a fresh file onto descriptors 1
and 2, so writes from C and from children that inherited them follow too. At most
``(keep + 1) * max_bytes`` plus one write stays on disk. A write that fails (a full disk, no
descriptor left for the new file) is dropped and counted, never raised: the daemon must not
die of its own log.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys

MAX_BYTES = 10 * 1024 * 1024
KEEP = 3


class RotatingStd(io.TextIOBase):
    def __init__(self, path: str, *, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.dropped = 0
        self._line_start = True  # print() writes the text and its newline apart

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 2

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "backslashreplace")
        try:
            size = os.fstat(2).st_size
            # rotated between lines only, so that no line is split across two files
            if self._line_start and size >= self.max_bytes and not self._rotate() \
                    and size >= 2 * self.max_bytes:
                self.dropped += 1  # could not rotate, and the file is at twice its bound
                return len(text)
            if data:
                self._line_start = data.endswith(b"\n")
            view = memoryview(data)
            while view:
                view = view[os.write(2, view):]
        except OSError:
            self.dropped += 1
        return len(text)

    def _rotate(self) -> bool:
        try:
            fd = os.open(self.path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                         | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError:
            return False
        try:
            for n in range(self.keep - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.path}.{n}", f"{self.path}.{n + 1}")
            os.replace(self.path, f"{self.path}.1")
            os.replace(self.path + ".new", self.path)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
        except OSError:
            return False
        finally:
            os.close(fd)
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            self.write(f"corral: {dropped} daemon log writes were dropped (disk full or no "
                       "descriptor for a new log file)\n")
        return True


def install(path: str, *, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> bool:
    """Rotate ``path`` when it is what stdout and stderr write to (the daemon as the CLI
    starts it); a daemon run in a terminal or under a service manager keeps its streams.
    True if installed."""
    try:
        log = os.stat(path)
        ours = [os.fstat(fd) for fd in (1, 2)]
    except OSError:
        return False
    if any((s.st_dev, s.st_ino) != (log.st_dev, log.st_ino) for s in ours):
        return False
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    writer = RotatingStd(path, max_bytes=max_bytes, keep=keep)
    sys.stdout = sys.stderr = writer
    return True
