"""A scratch root debootstrap filled is removed even after the build was killed half-way: its
``/proc`` mounts are detached first, and the build's whole session dies with it."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path
from types import FrameType

import pytest

from corral.drivers.host import scratch
from corral.drivers.vm import rootfs

MOUNTINFO = """\
22 1 0:21 / /proc rw - proc proc rw
40 30 0:5 / /cache/rootfs-1/tree/proc rw - proc proc rw
41 40 0:6 / /cache/rootfs-1/tree/proc/sys/fs/binfmt_misc rw - binfmt_misc x rw
42 30 0:7 / /cache/rootfs-1/tree/dev/pts rw - devpts devpts rw
43 30 0:8 / /cache/rootfs-10/tree/proc rw - proc proc rw
44 30 0:9 / /cache/rootfs-1/a\\040b rw - tmpfs t rw
"""


def test_the_mounts_beneath_a_tree_deepest_first_and_not_a_siblings() -> None:
    found = scratch.mounts_beneath("/cache/rootfs-1", MOUNTINFO)
    assert found[0] == "/cache/rootfs-1/tree/proc/sys/fs/binfmt_misc"
    assert set(found) == {"/cache/rootfs-1/tree/proc/sys/fs/binfmt_misc",
                          "/cache/rootfs-1/tree/proc", "/cache/rootfs-1/tree/dev/pts",
                          "/cache/rootfs-1/a b"}


def test_a_tree_with_proc_mounted_inside_is_removed(tmp_path: Path) -> None:
    tree = tmp_path / "rootfs-x" / "tree"
    (tree / "proc").mkdir(parents=True)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"proc", str(tree / "proc").encode(), b"proc", 0, None) != 0:
        pytest.skip(f"cannot mount proc here: {os.strerror(ctypes.get_errno())} (needs root)")
    assert scratch.mounts_beneath(str(tmp_path)) == [str(tree / "proc")]
    scratch.remove(str(tmp_path / "rootfs-x"))
    assert not (tmp_path / "rootfs-x").exists()
    assert scratch.mounts_beneath(str(tmp_path)) == []


class _Interrupted(Exception):
    pass


def test_an_interrupted_build_kills_its_whole_session(tmp_path: Path) -> None:
    """What a timeout or Ctrl-C does to a build: its children (debootstrap's chrooted dpkg)
    must not outlive it."""
    pidfile = tmp_path / "child"

    def interrupt(_sig: int, _frame: FrameType | None) -> None:
        raise _Interrupted

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(_Interrupted):
            rootfs._debootstrap(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    child = int(pidfile.read_text())
    for _ in range(100):  # SIGKILLed: gone once its parent (init, now) reaps it
        if not os.path.exists(f"/proc/{child}") or \
                Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"the build's child {child} outlived it")
