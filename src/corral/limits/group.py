"""One agent instance's cgroup: the directories it lives in, and what can be done with them.

A ``Group`` is plain data (directories per hierarchy, the OOM count it started with) that
round-trips through the driver ``Handle``, so a daemon restarted after a SIGKILL finds its
agents' groups again and can still stop, measure and judge them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal as _signal
from dataclasses import field
from typing import Literal

from corral.lean.record import Record, record
from corral.limits import files, v1, v2

Version = Literal["v1", "v2"]
UNIFIED = "unified"  # key of the cgroup2 directory in ``dirs`` (v2, or hybrid for cgroup.kill)


@record
class Usage(Record):
    cpu_seconds: float
    memory_bytes: int
    processes: int


@record
class Group(Record):
    version: Version  # v1 also covers hybrid hosts: limits in v1, membership and kill in v2
    dirs: dict[str, str] = field(default_factory=dict)
    oom_base: int = 0

    # --- membership -----------------------------------------------------------------------

    def join_files(self) -> list[str]:
        """The ``cgroup.procs`` files a new member writes itself into, one per hierarchy."""
        return [os.path.join(d, "cgroup.procs") for d in dict.fromkeys(self.dirs.values())]

    def _membership_dir(self) -> str:
        for key in (UNIFIED, "freezer", "memory", "pids", "cpuacct", "cpu"):
            if key in self.dirs:
                return self.dirs[key]
        raise ValueError("a group without directories")

    def members(self) -> set[int]:
        return files.pids(os.path.join(self._membership_dir(), "cgroup.procs"))

    def signal(self, sig: int) -> None:
        for pid in self.members():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    async def kill(self) -> bool:
        """Kill every member, whatever it did to hide (setsid, double fork, a scrubbed
        environment): membership is the kernel's, not ours to lose. True: the group is empty."""
        if UNIFIED in self.dirs:
            return await v2.kill(self.dirs[UNIFIED])
        if "freezer" in self.dirs:
            return await v1.kill_frozen(self.dirs["freezer"])
        return await v2.kill(self._membership_dir())  # no cgroup.kill there: kill until empty

    # --- accounting -----------------------------------------------------------------------

    def oom_kills(self) -> int:
        """OOM kills inside the group since it was made (or adopted)."""
        if self.version == "v1":
            return max(0, v1.oom_kills(self.dirs) - self.oom_base)
        return max(0, v2.oom_kills(self.dirs[UNIFIED]) - self.oom_base)

    def usage(self) -> Usage | None:
        unified = self.dirs.get(UNIFIED)
        if self.version == "v1":  # on hybrid hosts the cgroup2 group counts CPU for free
            cpu = v1.cpu_seconds(self.dirs) if "cpuacct" in self.dirs else \
                v2.cpu_seconds(unified) if unified else None
            mem = v1.memory_bytes(self.dirs) if "memory" in self.dirs else None
        else:
            assert unified is not None
            cpu, mem = v2.cpu_seconds(unified), v2.memory_bytes(unified)
        members = self.members()
        if mem is None:  # no memory controller on this group: add up the members
            mem = sum(_rss(pid) for pid in members)
        if cpu is None:
            return None
        return Usage(cpu, mem, len(members))

    # --- lifetime ---------------------------------------------------------------------------

    def remove(self) -> bool:
        """rmdir every directory (and the project's, once it is empty). False: some are still
        busy (a member still exiting); the caller retries later, never blocking here."""
        busy = False
        for d in dict.fromkeys(self.dirs.values()):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                busy = True
                continue
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(d))  # the project's group, when this was its last
        return not busy

    def to_json(self) -> str:
        return json.dumps({"v": self.version, "dirs": self.dirs, "oom": self.oom_base},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Group | None:
        try:
            raw = json.loads(text)
            version: Version = "v2" if raw["v"] == "v2" else "v1"
            return cls(version, {str(k): str(v) for k, v in raw["dirs"].items()},
                       int(raw.get("oom", 0)))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def _rss(pid: int) -> int:
    text = files.read(f"/proc/{pid}/statm")
    try:
        return int(text.split()[1]) * _PAGE if text else 0
    except (IndexError, ValueError):
        return 0


_PAGE = os.sysconf("SC_PAGE_SIZE")
SIGKILL = _signal.SIGKILL
