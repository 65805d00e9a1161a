"""A Debian root tree with Python, built once by debootstrap at a known cache path.

VM agents that need Python boot the usual small guest and run their job in this tree, shared
read-only over 9p with a tmpfs overlay per VM, rather than in an initramfs holding it: the tree
is ~260 MB, which an initramfs would have to unpack into the guest's RAM on every boot (more
than the default 256 MB VM has), while 9p reads only the files the job opens. Being a plain
directory at ``CACHE/rootfs/SUITE-python3`` also lets the container level import the same tree
as its base image instead of debootstrapping again.

The tree is not content-addressed: debootstrap's result depends on the mirror's state, not on
an input known before building. It is built in a temporary dir and renamed into place, so a
half-built tree is never used; ``--force`` rebuilds it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from corral.drivers.host import scratch
from corral.drivers.vm.guest import Progress, cache_root
from corral.errors import DriverError

FIX = "corral vm bootstrap --python"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
_STAMP = ".corral-rootfs"


def suite() -> str:
    """The host's Debian release (``bookworm``): its mirror and keyring are known to work."""
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "VERSION_CODENAME" and value:
                    return value.strip('"')
    except OSError:
        pass
    return "bookworm"


def mirror() -> str:
    """The first Debian archive URI apt is configured with (a local mirror if there is one)."""
    candidates = ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]
    for path in candidates:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] or words[:1] == ["deb"]:
                for word in words[1:]:
                    if word.startswith("http") and word.rstrip("/").endswith("/debian"):
                        return word.rstrip("/")
    return DEFAULT_MIRROR


def default_path() -> str:
    return os.path.join(cache_root(), "rootfs", f"{suite()}-python3")


def find(path: str | None = None) -> str | None:
    path = path or default_path()
    return path if os.path.exists(os.path.join(path, _STAMP)) else None


def build(*, force: bool = False, progress: Progress | None = None,
          path: str | None = None) -> str:
    say = progress or (lambda _msg: None)
    path = path or default_path()
    if not force and find(path):
        say(f"Python root {path} is cached")
        return path
    if shutil.which("debootstrap") is None:
        raise DriverError("debootstrap not found: the guest's Python root is built with it",
                          "apt-get install debootstrap")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix="rootfs-", dir=parent)
    try:
        tree = os.path.join(work, "tree")
        say(f"debootstrap --variant=minbase --include=python3 {suite()} from {mirror()} "
            "(about a minute)")
        code, out = _debootstrap(
            ["debootstrap", "--variant=minbase", "--include=python3", suite(), tree, mirror()])
        if code != 0:
            tail = out.strip().splitlines()[-1:] or [""]
            raise DriverError(f"debootstrap failed: {tail[0]}",
                              "check the Debian mirror is reachable, then run "
                              f"{FIX} again")
        archives = os.path.join(tree, "var", "cache", "apt", "archives")
        for name in os.listdir(archives) if os.path.isdir(archives) else ():
            if name.endswith(".deb"):  # 40 MB of packages already unpacked
                os.unlink(os.path.join(archives, name))
        with open(os.path.join(tree, _STAMP), "w", encoding="utf-8") as f:
            f.write(f"{suite()} python3\n")
        old = f"{path}.old"
        if os.path.exists(path):
            os.replace(path, old)
        os.replace(tree, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        scratch.remove(work)  # and a killed debootstrap's /proc mounts inside it
    say(f"Python root built at {path}")
    return path


def _debootstrap(argv: list[str]) -> tuple[int, str]:
    """Run it in a session of its own, killed whole if this is interrupted."""
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True) as proc:
        try:
            out, _ = proc.communicate()
        except BaseException:
            scratch.kill_session(proc.pid)  # then the with closes its pipe and reaps it
            raise
    return proc.returncode, out
