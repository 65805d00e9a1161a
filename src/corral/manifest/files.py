"""Reading the files a manifest names without trusting them: only regular files, only so much.

``-f /dev/zero`` would be read forever, ``-f FIFO`` blocks in ``open`` until a writer comes,
and a 10 GB file is read whole before YAML sees its first line. So a manifest (and a dotenv
file) is opened non-blocking, must be a regular file, and is read up to ``MAX_BYTES``; bytes
that are not UTF-8 are reported by line and column. Existence checks swallow every ``OSError``
(pathlib's let ENAMETOOLONG and EACCES through), and a path longer than the kernel takes is a
problem named at load, not an exception at spawn.

Stdlib only: ``corral ps`` (through ``cli.project``) and the daemon import it.
"""

from __future__ import annotations

import os
import stat

# 1 MiB: a fleet of 1,000 agents is ~200 KB; PyYAML's pure-Python scanner (which reads any
# file with a syntax error again, for its messages) takes ~0.4 s for 1 MiB of plain text here.
MAX_BYTES = 1 << 20
NAME_MAX = 255  # bytes in one path component (Linux, every common file system)
PATH_MAX = 4095  # bytes in a path, without the terminating NUL


class Unreadable(Exception):
    """A file that exists but cannot be taken as text; ``str()`` says why, in one line."""


def kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: str | os.PathLike[str], limit: int = MAX_BYTES) -> bytes:
    """The file's bytes; ``Unreadable`` if it is not a regular file or is over ``limit``.
    ``FileNotFoundError`` (and other ``OSError``) pass through for the caller to word."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise Unreadable(f"{kind(mode)}, not a regular file (pass a YAML file)")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:  # the size stat gives may be stale: count what is read
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise Unreadable(f"larger than {limit // 1024} KiB, the most corral reads "
                             "(split it, or keep data in files it points to)")
        return b"".join(chunks)
    finally:
        os.close(fd)


def decode(data: bytes) -> str:
    """UTF-8 text; ``Unreadable`` names the first bad byte's line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise Unreadable(f"line {line}, column {column}: byte 0x{data[exc.start]:02x} is not "
                         "UTF-8 (save the file as UTF-8)") from None


def read_text(path: str | os.PathLike[str], limit: int = MAX_BYTES) -> str:
    return decode(read_bytes(path, limit))


def is_file(path: str | os.PathLike[str]) -> bool:
    """``Path.is_file`` that is False, not an exception, for a name too long or a dir it
    may not search."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def is_dir(path: str | os.PathLike[str]) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def path_problem(path: str) -> str | None:
    """Why the kernel would refuse ``path`` (ENAMETOOLONG), or None."""
    raw = os.fsencode(path)
    if len(raw) > PATH_MAX:
        return f"the path is {len(raw)} bytes long; paths are at most {PATH_MAX} (PATH_MAX)"
    longest = max(raw.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        shown = os.fsdecode(longest[:20]) + "..."
        return (f"a path component ({shown!r}) is {len(longest)} bytes long; file names are "
                f"at most {NAME_MAX} (NAME_MAX)")
    return None
