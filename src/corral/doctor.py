"""What this host can run: each isolation level's availability and the fix when it is not."""

from __future__ import annotations

import os
import shutil

from corral.drivers import registry

Row = tuple[str, bool, str, str]

# Levels other issues add; listed so users see what exists and what it needs.
_LATER = {
    "sandbox": ("bwrap", "apt-get install bubblewrap"),
    "container": ("podman", "apt-get install podman (or docker.io)"),
    "vm": ("qemu-system-x86_64", "apt-get install qemu-system-x86"),
}


async def report() -> list[Row]:
    rows: list[Row] = []
    for name in registry.names():
        if name == "fake":
            continue
        try:
            health = await registry.load(name)().check()
        except Exception as exc:  # a broken third-party driver must not hide the others
            rows.append((name, False, f"driver failed to load: {exc}", "reinstall it"))
            continue
        rows.append((name, health.available, health.detail, health.fix))
    for level, (binary, fix) in _LATER.items():
        if level in registry.names():
            continue
        found = shutil.which(binary)
        detail = (f"{binary} found at {found}; this corral version does not drive it yet"
                  if found else f"{binary} not found; this corral version does not drive it yet")
        rows.append((level, False, detail, "" if found else fix))
    rows.append(_limits())
    return rows


def _limits() -> Row:
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    v1 = os.path.isdir("/sys/fs/cgroup/memory")
    kind = "cgroup v2" if v2 else "cgroup v1" if v1 else "no cgroups"
    return ("limits", False, f"{kind} seen; resource limits arrive with the containment "
            "release (rlimits meanwhile)", "")
