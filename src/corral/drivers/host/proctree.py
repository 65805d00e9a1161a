"""Process-tree facts from /proc and the means to end a whole tree.

Every process an agent starts inherits ``CORRAL_RUN`` (a fresh id per start), so the tree can be
found even after members double-fork, call setsid or change their process group. Finding it is
one /proc scan; a burst of stops (``corral down`` of 500 instances) shares one scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import time
from collections import defaultdict

MARKER = "CORRAL_RUN"
_MARKER_BYTES = MARKER.encode() + b"="
_PR_SET_CHILD_SUBREAPER = 36


def stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat split after the command name (field 3, the state, comes first)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` in clock ticks since boot; None when it is gone."""
    fields = stat_fields(pid)
    if fields is None or fields[0] == b"Z":
        return None
    return int(fields[19])


def alive(pid: int, expected_start: int | None) -> bool:
    st = start_time(pid)
    return st is not None and (expected_start is None or st == expected_start)


def cpu_and_rss(pid: int) -> tuple[float, int] | None:
    """CPU seconds (user+system, with reaped children) and resident bytes of one process."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    cpu = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return cpu, int(fields[21]) * os.sysconf("SC_PAGE_SIZE")


def trees_usage(roots: list[int]) -> dict[int, tuple[float, int, int]]:
    """For each of ``roots``: (CPU seconds, resident bytes, processes) of it and every process
    under it, from one /proc scan; a root that is gone is left out. Plain Python (the ray
    node ships this module by value)."""
    children: dict[int, list[int]] = defaultdict(list)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = stat_fields(int(name))
        if fields is not None and len(fields) > 1:
            children[int(fields[1])].append(int(name))
    out = {}
    for root in roots:
        cpu, rss, count = 0.0, 0, 0
        todo, seen = [root], set()
        while todo:
            member = todo.pop()
            if member in seen:
                continue
            seen.add(member)
            got = cpu_and_rss(member)
            if got is None:
                continue
            cpu, rss, count = cpu + got[0], rss + got[1], count + 1
            todo.extend(children.get(member, ()))
        if count:
            out[root] = (cpu, rss, count)
    return out


def _scan() -> dict[str, set[int]]:
    found: dict[str, set[int]] = defaultdict(set)
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        at = env.find(_MARKER_BYTES)
        if at < 0 or (at > 0 and env[at - 1] != 0):
            continue
        end = env.find(b"\0", at)
        run = env[at + len(_MARKER_BYTES) : end if end >= 0 else None].decode(errors="replace")
        found[run].add(int(name))
    return found


class ProcTable:
    """Coalesces /proc scans: callers within ``max_age`` seconds share one scan."""

    def __init__(self, max_age: float = 0.02) -> None:
        self._max_age = max_age
        self._at = 0.0
        self._pending: asyncio.Future[dict[str, set[int]]] | None = None
        self._last: dict[str, set[int]] = {}

    async def members(self, run_id: str) -> set[int]:
        if self._pending is None and time.monotonic() - self._at > self._max_age:
            loop = asyncio.get_running_loop()
            self._pending = loop.run_in_executor(None, _scan)
            try:
                self._last = await self._pending
            finally:
                self._pending = None
                self._at = time.monotonic()
        elif self._pending is not None:
            await asyncio.shield(self._pending)
        return set(self._last.get(run_id, ()))

    def invalidate(self) -> None:
        self._at = 0.0


def signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def become_subreaper() -> bool:
    """Orphaned descendants of our agents re-parent to us instead of init, so they stay
    findable and we reap them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def reap_orphans(known: set[int]) -> None:
    """Reap zombie children that are not ours to wait for: adopted orphans of agent trees.

    Processes we spawned are in ``known`` (their waiters reap them); helpers spawned through
    asyncio stay in our own process group and are left to asyncio.
    """
    mine = os.getpgrp()
    for pid in _children():
        if pid in known:
            continue
        fields = stat_fields(pid)
        if fields is not None and fields[0] == b"Z" and int(fields[2]) != mine:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _children() -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return out


SIGKILL = signal.SIGKILL
