"""The initramfs: a gzip'd ``newc`` cpio archive, written here byte for byte.

Written in Python rather than by ``cpio``: no host tool is needed, and with every mtime 0 the
same inputs give the same file (the guest's digest names its content, not its build time).
"""

from __future__ import annotations

import gzip
import io
import stat


class Cpio:
    """A ``newc`` archive as the kernel unpacks it; mtimes are 0 so output is reproducible."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        encoded = name.encode() + b"\0"
        fields = [self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
        self._ino += 1
        self.buf.write(b"070701" + b"".join(b"%08X" % v for v in fields) + encoded)
        self.buf.write(b"\0" * (-(110 + len(encoded)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def initramfs(busybox: bytes, modules: list[tuple[str, bytes]], init_text: str) -> bytes:
    archive = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "run", "etc", "mnt", "lib",
              "lib/modules", "usr", "usr/bin", "usr/sbin", "root"):
        archive.dir(d)
    archive.file("bin/busybox", busybox, 0o755)
    archive.symlink("bin/sh", "busybox")
    for name, data in modules:
        archive.file(f"lib/modules/{name}.ko", data)
    archive.file("lib/modules/load", "".join(f"{n}\n" for n, _ in modules).encode())
    archive.file("init", init_text.encode(), 0o755)
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)
