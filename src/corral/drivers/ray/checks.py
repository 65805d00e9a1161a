"""One check of a probe, run on the node where the instance runs (``node.Node.probe``): tcp,
http(s), exec and heartbeat, the same looks the supervisor's own checks take
(``corral.drivers.host.looks``). The supervisor keeps the probe's loop, its thresholds and what
a failure does; only the look at the instance happens here, where its loopback, its files and
its processes are.

Plain Python on purpose, like ``node``: shipped by value (with ``looks``), so a node needs no
corral. ``check`` is the description ``driver.describe`` makes of a probe.
"""

from __future__ import annotations

import asyncio
from typing import Any

from corral.drivers.host import looks


async def run_check(check: dict[str, Any], cwd: str, env: dict[str, str],
                    began: float) -> tuple[bool, str]:
    """(passed, detail) of one check, bounded by its timeout. ``began``: the run's start on
    this node's clock (a heartbeat file is counted from then at the earliest)."""
    kind, timeout = check["kind"], float(check["timeout"])
    if kind == "heartbeat":
        return looks.heartbeat(check["file"], float(check["within"]), cwd, began)
    if kind == "tcp":
        look = looks.tcp(check["host"], int(check["port"]))
    elif kind == "http":
        look = looks.http(check["host"], int(check["port"]), check["path"], check["scheme"],
                          check["status"], timeout)
    else:
        look = looks.command(check["command"], env, cwd)
    try:
        return await asyncio.wait_for(look, timeout)
    except TimeoutError:
        return False, f"{kind} check timed out after {timeout:g}s"
