"""Reading and writing cgroupfs files: tiny, synchronous and cheap (no disk behind them)."""

from __future__ import annotations

import contextlib
import os


def read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def read_int(path: str) -> int | None:
    text = read(path)
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None  # "max" and the like


def keyed(path: str, key: str) -> int | None:
    """A value from a flat-keyed file (``memory.events``, ``cpu.stat``, ``memory.oom_control``)."""
    text = read(path)
    if text is None:
        return None
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            with contextlib.suppress(ValueError):
                return int(v)
    return None


def write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def pids(path: str) -> set[int]:
    """Members listed in a ``cgroup.procs`` file; empty when the group is gone."""
    text = read(path)
    return {int(x) for x in text.split()} if text else set()


def exists(path: str) -> bool:
    return os.path.exists(path)
