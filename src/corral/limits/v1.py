"""cgroup v1: one directory per controller, each agent group made in every one corral uses.

Limits: ``cpu.cfs_quota_us``/``cpu.cfs_period_us``, ``memory.limit_in_bytes`` (and
``memory.soft_limit_in_bytes`` for a reservation), ``pids.max``. v1 has no ``memory.high``.
OOM kills are counted by ``oom_kill`` in ``memory.oom_control`` (kernel 4.13+). Killing a v1
group is racy by nature (a member may fork while we read the list), so the freezer freezes it
first: every member is stopped, killed, then thawed so the kills land; repeat until empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from corral.limits import files

PERIOD_US = 100_000


def limit_files(cpus: float | None, memory: int | None, reservation: int | None,
                pids: int | None) -> list[tuple[str, str, str]]:
    """(controller, file, value) to write, in order: the period before the quota."""
    out: list[tuple[str, str, str]] = []
    if cpus is not None:
        out.append(("cpu", "cpu.cfs_period_us", str(PERIOD_US)))
        out.append(("cpu", "cpu.cfs_quota_us", str(max(1000, round(cpus * PERIOD_US)))))
    if memory is not None:
        out.append(("memory", "memory.limit_in_bytes", str(memory)))
    if reservation is not None:
        out.append(("memory", "memory.soft_limit_in_bytes", str(reservation)))
    if pids is not None:
        out.append(("pids", "pids.max", str(pids)))
    return out


def oom_kills(dirs: dict[str, str]) -> int:
    d = dirs.get("memory")
    return (files.keyed(os.path.join(d, "memory.oom_control"), "oom_kill") or 0) if d else 0


def cpu_seconds(dirs: dict[str, str]) -> float | None:
    d = dirs.get("cpuacct")
    ns = files.read_int(os.path.join(d, "cpuacct.usage")) if d else None
    return None if ns is None else ns / 1e9


def memory_bytes(dirs: dict[str, str]) -> int | None:
    d = dirs.get("memory")
    return files.read_int(os.path.join(d, "memory.usage_in_bytes")) if d else None


async def kill_frozen(freezer: str, *, rounds: int = 200) -> bool:
    """Freeze, SIGKILL every member, thaw; until the group is empty. True when it is."""
    state = os.path.join(freezer, "freezer.state")
    procs = os.path.join(freezer, "cgroup.procs")
    for _ in range(rounds):
        members = files.pids(procs)
        if not members:
            return True
        with contextlib.suppress(OSError):
            files.write(state, "FROZEN")
        for _ in range(20):  # FREEZING until every task stopped; D-state ones may lag
            if (files.read(state) or "").strip() != "FREEZING":
                break
            await asyncio.sleep(0.001)
        for pid in files.pids(procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            files.write(state, "THAWED")
        await asyncio.sleep(0.002)
    return not files.pids(procs)
