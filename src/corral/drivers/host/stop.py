"""How a host-process instance is stopped: the stop signal, the grace period, then everything
it started is killed, so nothing outlives its instance.

With its own cgroup (``group``) membership is exact: systemd's ``KillMode=control-group``, no
/proc scan. Without one (``tree``), the process group is signalled, and so is every process
carrying the start's ``CORRAL_RUN`` marker (found by a /proc scan: a daemonizing child leaves
the group but keeps its environment); what is left after the grace period is killed until a
scan finds nothing.

``exit`` is the instance's exit future when the launcher watches it (it started or re-adopted
it), else None: then the pid (and its kernel start time, so a reused pid is not taken for it)
is all there is to go by.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from corral.drivers.base import ExitResult, Handle
from corral.drivers.host import proctree
from corral.limits.limiter import Group


async def gone(handle: Handle, deadline: float) -> None:
    """Until the handle's process is gone or ``deadline`` (monotonic) passes."""
    assert handle.pid is not None
    while time.monotonic() < deadline and proctree.alive(handle.pid, handle.pid_start):
        await asyncio.sleep(0.05)


async def tree(handle: Handle, exit: asyncio.Future[ExitResult] | None,
               procs: proctree.ProcTable, *, sig: int, timeout: float) -> None:
    run_id = handle.data.get("run_id", "")
    assert handle.pid is not None
    procs.invalidate()
    members = await procs.members(run_id) if run_id else set()
    if exit is None or not exit.done():
        proctree.signal_group(handle.pid, sig)
    proctree.signal_all(members, sig)
    ended = exit is None or exit.done()
    if ended and not members and not proctree.alive(handle.pid, handle.pid_start):
        proctree.signal_group(handle.pid, signal.SIGKILL)
        return  # nothing of the tree is left: no grace period, no second scan
    deadline = time.monotonic() + timeout
    if exit is not None and not exit.done():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(exit), timeout)
    elif exit is None and proctree.alive(handle.pid, handle.pid_start):
        await gone(handle, deadline)
    while run_id and time.monotonic() < deadline:  # the rest of the tree, as above
        procs.invalidate()
        if not await procs.members(run_id):
            break
        await asyncio.sleep(0.05)
    # Whatever is left of the tree after the grace period is killed, group and strays,
    # until a scan finds nothing: a member may fork once more before its SIGKILL lands.
    for _ in range(50):
        proctree.signal_group(handle.pid, signal.SIGKILL)
        procs.invalidate()
        left = await procs.members(run_id) if run_id else set()
        if not left:
            break
        proctree.signal_all(left, signal.SIGKILL)
        await asyncio.sleep(0.005)
    if exit is not None:
        await asyncio.shield(exit)


async def group(handle: Handle, exit: asyncio.Future[ExitResult] | None, members: Group, *,
                sig: int, timeout: float) -> None:
    """``sig`` to every member, the grace period, then the group is killed until empty (the
    caller removes it and awaits the exit)."""
    assert handle.pid is not None
    deadline = time.monotonic() + timeout
    if exit is None or not exit.done():
        proctree.signal_group(handle.pid, sig)
    members.signal(sig)
    if exit is not None and not exit.done():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(exit), timeout)
    elif exit is None:
        await gone(handle, deadline)
    # The main process may be a wrapper that dies at once (the sandbox's bwrap), or leave
    # children still shutting down: they get the rest of the grace period too. Each look
    # at the group reads a file: once here, then only while someone is left (S5: 500 stops).
    left = members.members()
    while left and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        left = members.members()
    if left:
        await members.kill()
