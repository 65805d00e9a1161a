"""cgroup v2: one directory per group, controllers enabled down the tree by the parent.

Limits: ``cpu.max`` ("quota period"), ``memory.max``, ``memory.low`` (reservation),
``memory.high`` (throttle before the hard limit), ``pids.max``. OOM kills are counted in
``memory.events`` (``oom_kill``). ``cgroup.kill`` (kernel 5.14+) kills every member atomically,
so nothing can fork its way out; without it, members are killed until the group is empty.

v2 forbids processes in a group whose children have controllers enabled ("no internal
processes"). When the supervisor's own group holds it, the supervisor moves itself into a
``corral-supervisor`` leaf beside its agents (what a delegated systemd service does).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal

from corral.errors import CorralError
from corral.limits import files

PERIOD_US = 100_000
LEAF = "corral-supervisor"


def limit_files(cpus: float | None, memory: int | None, reservation: int | None,
                high: int | None, pids: int | None) -> list[tuple[str, str, str]]:
    """(controller, file, value) to write."""
    out: list[tuple[str, str, str]] = []
    if cpus is not None:
        out.append(("cpu", "cpu.max", f"{max(1000, round(cpus * PERIOD_US))} {PERIOD_US}"))
    if memory is not None:
        out.append(("memory", "memory.max", str(memory)))
    if reservation is not None:
        out.append(("memory", "memory.low", str(reservation)))
    if high is not None:
        out.append(("memory", "memory.high", str(high)))
    if pids is not None:
        out.append(("pids", "pids.max", str(pids)))
    return out


def enable(parent: str, controllers: set[str]) -> None:
    """Enable ``controllers`` for the children of ``parent`` (the own group first)."""
    if not controllers:
        return
    have = set((files.read(os.path.join(parent, "cgroup.subtree_control")) or "").split())
    missing = controllers - have
    if not missing:
        return
    path = os.path.join(parent, "cgroup.subtree_control")
    line = " ".join(f"+{c}" for c in sorted(missing))
    try:
        files.write(path, line)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        make_room(parent)
        files.write(path, line)


def make_room(own: str) -> None:
    """Move the supervisor out of its own group into a leaf, so the group may have children
    with controllers. Other processes in it are not ours to move: say so."""
    leaf = os.path.join(own, LEAF)
    os.makedirs(leaf, exist_ok=True)
    files.write(os.path.join(leaf, "cgroup.procs"), str(os.getpid()))
    others = files.pids(os.path.join(own, "cgroup.procs"))
    if others:
        raise CorralError(
            f"the supervisor's cgroup {own} holds other processes, so agent groups with "
            "limits cannot be nested in it",
            "start the daemon in a cgroup of its own (e.g. systemd-run --user --scope "
            "-p Delegate=yes corral up)")


def oom_kills(group: str) -> int:
    return files.keyed(os.path.join(group, "memory.events"), "oom_kill") or 0


def cpu_seconds(group: str) -> float | None:
    """``cpu.stat`` is a core file: there even without the cpu controller."""
    us = files.keyed(os.path.join(group, "cpu.stat"), "usage_usec")
    return None if us is None else us / 1e6


def memory_bytes(group: str) -> int | None:
    return files.read_int(os.path.join(group, "memory.current"))


async def kill(group: str, *, rounds: int = 200) -> bool:
    """``cgroup.kill`` and wait until the group is empty. True when it is."""
    procs = os.path.join(group, "cgroup.procs")
    killer = os.path.join(group, "cgroup.kill")
    has_kill = files.exists(killer)
    for _ in range(rounds):
        members = files.pids(procs)
        if not members:
            return True
        if has_kill:
            with contextlib.suppress(OSError):
                files.write(killer, "1")
        else:
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.002)
    return not files.pids(procs)
