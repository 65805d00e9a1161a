"""Shared loopbacks for sandboxed agents: ``network: loopback:NAME``.

The agents of a fleet that name the same loopback share one network namespace holding only a
loopback interface: they reach each other on 127.0.0.1 and nothing else (not the host's
loopback, not the network), like an internal network in compose. Others, sandboxed with
``network: none``, keep a loopback of their own.

The namespace is made once per group, by a bwrap that brings its loopback up and is killed once
it has; the supervisor keeps it alive by holding it open (an fd on ``/proc/PID/ns/net``), so
it outlives any member's restart. Members join it through ``nsenter --net`` on that fd, then
bwrap builds the rest of their sandbox as for any other agent. After a supervisor restart the
fd is gone: the group is found again in a running member, or made anew when none runs.
Joining a namespace takes CAP_SYS_ADMIN: the supervisor must run as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable

from corral.drivers.host import bwrap
from corral.errors import DriverError

_SETTLE = 5.0  # seconds bwrap may take to make the namespace


class Loopbacks:
    """Each group's namespace, held open; the same for every member (``path``)."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def path(self, group: str, members: Iterable[int], bwrap_path: str) -> str:
        """The namespace ``nsenter --net=`` joins for ``group``: found in a running member
        (``members``: their bwrap pids) or made."""
        async with self._locks.setdefault(group, asyncio.Lock()):
            fd = self._held.get(group)
            if fd is None:
                fd = _held_by(members)
                if fd is None:
                    fd = await _make(bwrap_path, group)
                self._held[group] = fd
        return f"/proc/{os.getpid()}/fd/{fd}"  # held for the supervisor's life


def _held_by(members: Iterable[int]) -> int | None:
    for pid in members:
        init = bwrap.sandbox_init(pid)
        if init is not None:
            try:
                return os.open(f"/proc/{init}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
    return None


async def _make(bwrap_path: str, group: str) -> int:
    """A new namespace with its loopback up: bwrap sets it up, execs ``sleep`` in it (so the
    setup is over), and is killed once the namespace is held."""
    maker = subprocess.Popen(
        [bwrap_path, "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-net", "--unshare-pid",
         "--die-with-parent", "--", "sleep", "60"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SETTLE
        while loop.time() < deadline and maker.poll() is None:
            init = bwrap.sandbox_init(maker.pid)
            if init is not None and bwrap.sandbox_init(init) is not None:  # sleep runs
                return os.open(f"/proc/{init}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            await asyncio.sleep(0.002)
        why = (maker.stderr.read().decode(errors="replace").strip().splitlines() or [""])[-1] \
            if maker.poll() is not None and maker.stderr else f"not ready in {_SETTLE:g}s"
        raise DriverError(f"cannot make the shared loopback {group!r}: {why or 'bwrap failed'}",
                          "run `corral doctor`; a shared loopback needs bwrap and root")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(maker.pid, signal.SIGKILL)
        maker.wait()
        if maker.stderr:
            maker.stderr.close()
