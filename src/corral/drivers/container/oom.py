"""A container's cgroup as the kernel keeps it: its OOM kills, seen while they happen, and
its usage (``stats``).

Docker's ``inspect`` says ``OOMKilled`` reliably (containerd watches the cgroup); Podman's
conmon does not on a cgroup v1 host like CI's, and the container's cgroup is removed before
``wait`` returns, so nothing is left to read afterwards. So, on v1, the driver registers an
eventfd on the container's ``memory.oom_control`` (``cgroup.event_control``): the kernel signals
it at every OOM in that group, and once more when the group is removed (then the file is gone).
The result's ``oom_killed`` is the engine's word *or* this one *or* conmon's ``oom`` file (it
writes one into its working directory when it sees the OOM: the instance's run dir when the
container was started by the CLI; with the API, conmon inherits the service's directory, shared
by every container, so that file does not count there). On v2
the engines' own detection (``memory.events``) is used as is. An OOM kill in the first
milliseconds, before the eventfd is registered, is caught by the group's ``oom_kill`` count
read at registration — unless the container is already gone by then.

A rootless container on cgroup v1 has no group of its own (it shares its starter's): then
nothing is watched (an OOM there is not its) and usage is its process tree's, from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from corral.drivers.base import ResourceUsage
from corral.drivers.host import proctree

_V1_MEMORY = "/sys/fs/cgroup/memory"


def _groups(pid: int | str) -> dict[str, str] | None:
    """``/proc/PID/cgroup`` as controller -> path (v2's unified group under "")."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    paths: dict[str, str] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            paths[c] = path
    return paths


def _holds_me(group: str, mine: str | None) -> bool:
    return mine is not None and (mine == group or mine.startswith(group.rstrip("/") + "/"))


def own_group(pid: int, paths: dict[str, str] | None = None) -> bool:
    """Whether ``pid`` (a container's init) has a cgroup of its own, apart from this
    process's. A rootless container on cgroup v1 gets none: it stays in the group of whoever
    started it, shared with the daemon and more, which must neither be read as the agent's
    usage nor watched for its OOM kills."""
    paths = _groups(pid) if paths is None else paths
    mine = _groups("self")
    if paths is None or mine is None:
        return False
    key = "memory" if "memory" in paths else ""
    return key in paths and not _holds_me(paths[key], mine.get(key))


def memory_dir(pid: int) -> str | None:
    """The v1 memory cgroup dir of ``pid``, as mounted here, when it is the container's own;
    None on v2, in a shared group or when unreadable."""
    paths = _groups(pid)
    if paths is None or "memory" not in paths or not own_group(pid, paths):
        return None
    found = os.path.join(_V1_MEMORY, paths["memory"].lstrip("/"))
    return found if os.path.isdir(found) else None


def _oom_kills(control: int) -> int:
    """``oom_kill`` of an open memory.oom_control (kernel 4.13+; 0 when absent)."""
    try:
        text = os.pread(control, 4096, 0).decode()
    except OSError:
        return 0
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


class OomWatch:
    """``killed`` turns True at the first OOM event of the watched group."""

    def __init__(self) -> None:
        self.killed = False
        self._fds: list[int] = []

    def watch(self, pid: int | None) -> bool:
        group = memory_dir(pid) if pid else None
        if group is None:
            return False
        efd = control = -1
        try:
            efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            control = os.open(os.path.join(group, "memory.oom_control"),
                              os.O_RDONLY | os.O_CLOEXEC)
            with open(os.path.join(group, "cgroup.event_control"), "w") as fh:
                fh.write(f"{efd} {control}")
        except OSError:
            for fd in (efd, control):
                if fd >= 0:
                    os.close(fd)
            return False
        self._fds = [efd, control]
        asyncio.get_running_loop().add_reader(efd, self._fired)
        self.killed = self.killed or _oom_kills(control) > 0  # one before we were listening
        return True

    def settle(self) -> None:
        """Take an event the loop has not delivered yet (called once the container exited)."""
        if self._fds:
            self._fired()

    def _fired(self) -> None:
        efd, control = self._fds
        try:
            os.eventfd_read(efd)
        except BlockingIOError:
            return  # nothing happened
        except OSError:
            pass
        try:
            os.pread(control, 4096, 0)
        except OSError:  # the group is gone: that was the removal, not an OOM
            self.close()
            return
        self.killed = True

    def close(self) -> None:
        if not self._fds:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().remove_reader(self._fds[0])
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


def usage(pid: int) -> ResourceUsage | None:
    """The container's own cgroup, as the kernel counts it (v1 or v2); its process tree
    when it has no group of its own (rootless on v1)."""
    paths = _groups(pid)
    if paths is None:
        return None
    if not own_group(pid, paths):
        return tree_usage(pid)

    def read(*candidates: str) -> str | None:
        for cand in candidates:
            with contextlib.suppress(OSError), open(cand) as fh:
                return fh.read()
        return None

    base = "/sys/fs/cgroup"
    v2 = paths.get("", "")
    mem = read(f"{base}/memory{paths.get('memory', '')}/memory.usage_in_bytes",
               f"{base}{v2}/memory.current")
    cpu = read(f"{base}/cpuacct{paths.get('cpuacct', '')}/cpuacct.usage",
               f"{base}/cpu,cpuacct{paths.get('cpuacct', '')}/cpuacct.usage")
    cpu_seconds = int(cpu) / 1e9 if cpu else 0.0
    if cpu is None:
        stat = read(f"{base}{v2}/cpu.stat") or ""
        usec = next((ln.split()[1] for ln in stat.splitlines() if ln.startswith("usage_usec")),
                    "0")
        cpu_seconds = int(usec) / 1e6
    pids = read(f"{base}/pids{paths.get('pids', '')}/pids.current",
                f"{base}{v2}/pids.current")
    return ResourceUsage(cpu_seconds=cpu_seconds, rss_bytes=int(mem) if mem else 0,
                         processes=int(pids) if pids else 1)


def tree_usage(pid: int) -> ResourceUsage | None:
    """``pid`` and every process under it, summed from /proc (resident memory, CPU time)."""
    got = proctree.trees_usage([pid]).get(pid)
    if got is None:
        return None
    return ResourceUsage(cpu_seconds=got[0], rss_bytes=got[1], processes=got[2])
