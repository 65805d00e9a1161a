"""What this host can run: each isolation level's availability and the fix when it is not."""

from __future__ import annotations

from corral.drivers import registry
from corral.limits.limiter import Limiter

Row = tuple[str, bool, str, str]

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
    from corral.drivers.container import doctor as containers

    rows += await containers.rows()  # each engine: installed, configured, base image, working
    rows.append(_limits())
    rows.append(_identities())
    return rows


def _identities() -> Row:
    """Whom agents run as here (corral.ownership.identity)."""
    import os
    import shutil

    if os.geteuid() != 0:
        return ("identity", True, f"agents run as uid {os.geteuid()} (corral's user; user: "
                "can name no other); sandboxes in its user namespace", "")
    if shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin") is None:
        return ("identity", False, "setpriv not found: sandboxes and user: agents cannot "
                "drop root", "apt-get install util-linux")
    return ("identity", True, "sandboxes: an unprivileged uid of their own (61184-65519); "
            "process and venv agents: root unless they set user:", "")


def _limits() -> Row:
    limiter = Limiter()
    label = limiter.label()
    lay = limiter.layout
    if lay.kind == "none" or not limiter.writable():
        return ("limits", False, f"{label}: memory as RLIMIT_AS (virtual), pids as RLIMIT_NPROC "
                "(not for root), no CPU rate; stop finds detached processes by a /proc scan",
                "run the daemon as root or in a delegated cgroup")
    own = lay.unified if lay.kind == "v2" else lay.v1.get("memory")
    return ("limits", True, f"{label}; agent groups under {own}", "")
