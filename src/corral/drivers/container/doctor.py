"""``corral doctor`` rows for Podman and Docker: installed, configured, base image, working.

What usually breaks, each with the exact fix: Podman on a host without systemd as PID 1 or with
hybrid cgroups needs ``cgroup_manager = "cgroupfs"`` and ``runtime = "runc"`` (crun refuses
hybrid cgroups), ``events_logger = "file"`` (no journald), and a ``default_ulimits`` nofile no
higher than the hard limit this process may set (Podman's default of 1048576 fails with
``setrlimit RLIMIT_NOFILE: Operation not permitted``). Docker needs its daemon running. Both
need the base image, which no registry can provide here. The last check is a real
``run --rm`` of the base image with a short timeout: only that proves the engine works.
A rootless Podman also says so, and whether it can enforce limits and give agents a network
(``rootless``).
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil

from corral.drivers.container import image, rootless
from corral.drivers.container.engine import ENGINES, Engine

Row = tuple[str, bool, str, str]
CONF = "/etc/containers/containers.conf"
_PODMAN_NOFILE = 1048576


def _conf_text() -> str:
    text = ""
    for path in (CONF, os.environ.get("CONTAINERS_CONF", "")):
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                text += fh.read() + "\n"
    return text


def _hybrid_or_v1() -> bool:
    return os.path.isdir("/sys/fs/cgroup/memory")  # a v1 controller mounted: not pure v2


def _no_systemd() -> bool:
    try:
        with open("/proc/1/comm") as fh:
            return fh.read().strip() != "systemd"
    except OSError:
        return True


def podman_settings() -> list[tuple[str, str, str]]:
    """``(section, line, why)`` for each containers.conf setting this host needs but lacks."""
    text = _conf_text()
    missing: list[tuple[str, str, str]] = []
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if 0 < hard < _PODMAN_NOFILE and "default_ulimits" not in text:
        missing.append(("containers", f'default_ulimits = ["nofile={hard}:{hard}", '
                        '"nproc=32768:32768"]', f"the hard nofile limit here is {hard}"))
    if _hybrid_or_v1() or _no_systemd():
        if 'cgroup_manager = "cgroupfs"' not in text:
            missing.append(("engine", 'cgroup_manager = "cgroupfs"', "no systemd cgroup manager"))
        if 'events_logger = "file"' not in text:
            missing.append(("engine", 'events_logger = "file"', "no journald"))
    if _hybrid_or_v1() and 'runtime = "runc"' not in text:
        missing.append(("engine", 'runtime = "runc"', "crun does not support hybrid cgroups"))
    return missing


async def _run_ok(engine: Engine, tag: str) -> str:
    try:
        got = await engine.run("run", "--rm", "--network", "none", tag, "true", timeout=30)
    except TimeoutError:
        return "a container did not finish within 30 s"
    return "" if got.ok else got.error_line()


async def engine_rows(name: str) -> list[Row]:
    binary = shutil.which(name)
    if binary is None:
        package = "podman runc" if name == "podman" else "docker.io"
        return [(name, False, "not installed", f"apt-get install {package}")]
    engine = Engine(name, binary)
    rows: list[Row] = []
    if name == "podman":
        rows += rootless.doctor_rows(engine)
        missing = podman_settings()
        if missing:
            lines = "; ".join(f"[{sec}] {line}" for sec, line, _ in missing)
            why = ", ".join(w for _, _, w in missing)
            rows.append(("podman", False, f"{CONF} lacks settings this host needs ({why})",
                         f"add to {CONF}: {lines}"))
    else:
        try:
            answers = (await engine.run("version", "--format", "{{.Server.Version}}",
                                        timeout=15)).ok
        except TimeoutError:
            answers = False
        if not answers:
            return [*rows, ("docker", False, f"{binary} found, but the daemon does not answer",
                            "start it: dockerd > /var/log/dockerd.log 2>&1 & "
                            "(or systemctl start docker)")]
    tag = image.base_image(python=True).tag
    if not await engine.image_exists(tag):
        rows.append((name, False, f"base image {tag} missing (nothing can be pulled here)",
                     f"corral image bootstrap --python --engine {name}"))
        return rows
    why = await _run_ok(engine, tag)
    if why:
        rows.append((name, False, f"cannot run a container: {why}",
                     "see the settings above; `podman info` / `docker info` show more"))
    else:
        rows.append((name, True, f"runs containers ({binary}; base image {tag})", ""))
    return rows


async def rows() -> list[Row]:
    found = await asyncio.gather(*(engine_rows(n) for n in ENGINES))
    return [row for group in found for row in group]
