"""Where this host's cgroups are and which of them are ours, read at run time.

Three layouts exist in the wild: pure cgroup v2 (one ``cgroup2`` mount at /sys/fs/cgroup, what
most machines have now), hybrid (v1 controllers plus a controller-less ``cgroup2`` mount, often
at /sys/fs/cgroup/unified) and pure v1. Nothing is assumed about mount points: they come from
/proc/self/mountinfo, and the supervisor's own group in each hierarchy from /proc/self/cgroup,
so agent groups nest under whatever group the supervisor was started in.
"""

from __future__ import annotations

import os
from dataclasses import field
from typing import Literal

from corral.lean.record import Record, record

Kind = Literal["v2", "hybrid", "v1", "none"]

# v1 controllers corral uses; ``freezer`` only to kill where no cgroup2 mount offers cgroup.kill
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer")


@record
class Layout(Record):
    kind: Kind
    v1: dict[str, str] = field(default_factory=dict)  # controller -> the supervisor's own dir
    unified: str | None = None  # the supervisor's own dir in the cgroup2 hierarchy
    v2_controllers: frozenset[str] = frozenset()  # controllers the cgroup2 hierarchy offers


def _unescape(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")


def parse_mountinfo(text: str) -> list[tuple[str, str, str, set[str]]]:
    """(mount point, root inside the hierarchy, fstype, super options) of cgroup mounts."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        out.append((_unescape(fields[4]), _unescape(fields[3]), tail[0], set(tail[2].split(","))))
    return out


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Controller -> group path from /proc/PID/cgroup; ``""`` is the cgroup2 hierarchy."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            out[""] = path
            continue
        for c in controllers.split(","):
            out[c] = path
    return out


def _join(mount: str, root: str, path: str) -> str:
    """The directory of group ``path`` under a mount of the hierarchy's ``root``."""
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root):]
    return os.path.normpath(mount + "/" + path.lstrip("/"))


def own_dir(path: str) -> str:
    """A supervisor moved into its leaf (see v2.make_room) still nests agents beside it."""
    return os.path.dirname(path) if os.path.basename(path) == "corral-supervisor" else path


def detect_from(mountinfo: str, proc_cgroup: str, *, read_controllers: bool = True) -> Layout:
    mounts = parse_mountinfo(mountinfo)
    groups = parse_proc_cgroup(proc_cgroup)
    v1: dict[str, str] = {}
    unified: str | None = None
    for mount, root, fstype, opts in mounts:
        if fstype == "cgroup2":
            if "" in groups and unified is None:
                unified = own_dir(_join(mount, root, groups[""]))
            continue
        for c in V1_CONTROLLERS:
            if c in opts and c in groups and c not in v1:
                v1[c] = _join(mount, root, groups[c])
    controllers: frozenset[str] = frozenset()
    if unified is not None and read_controllers:
        try:
            with open(os.path.join(unified, "cgroup.controllers")) as f:
                controllers = frozenset(f.read().split())
        except OSError:
            controllers = frozenset()
    if "memory" in v1:
        kind: Kind = "hybrid" if unified is not None else "v1"
    elif unified is not None and "memory" in controllers:
        kind = "v2"
    else:
        kind = "none"
    return Layout(kind, v1, unified, controllers)


def detect(proc: str = "/proc/self") -> Layout:
    try:
        with open(os.path.join(proc, "mountinfo")) as f:
            mountinfo = f.read()
        with open(os.path.join(proc, "cgroup")) as f:
            proc_cgroup = f.read()
    except OSError:
        return Layout("none")
    return detect_from(mountinfo, proc_cgroup)
