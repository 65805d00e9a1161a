"""``ray: {address: auto}``: a local Ray head that corral starts itself, one per state dir,
bound to 127.0.0.1, with its Ray temp dir beside corral's cache and Ray's token auth on a token
of its own (``env``).

It is one ``ray start --head --block`` in a session of its own (Ray's processes are its
children and go down with it), recorded in ``head.json`` (pid, its kernel start time,
address) so the next driver, or the next daemon, finds it running instead of starting
another. The driver stops it by PID when it closes with no instance left on it: SIGTERM, then
after a grace period SIGKILL to its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path

from corral.drivers.host import proctree
from corral.errors import DriverError

READY = b"Ray runtime started"
START_TIMEOUT = 90.0
STOP_GRACE = 20.0
# Ray's Unix sockets live under its temp dir (SESSION/sockets/plasma_store...): 107 bytes at
# most, so a deep state dir gets a short stand-in under /tmp
_MAX_TEMP_DIR = 40
# a head told it is alone (Ray's switch for laptops) keeps 127.0.0.1 and binds nothing else;
# a bridge to it is told the same, or Ray turns 127.0.0.1 into the machine's outward address
ALONE = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
TOKEN_BYTES = 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _session(sid: int) -> list[int]:
    """Live processes of session ``sid`` (the head and what it started)."""
    found = []
    for entry in os.listdir("/proc"):
        fields = proctree.stat_fields(int(entry)) if entry.isdigit() else None
        if fields is not None and fields[0] != b"Z" and int(fields[3]) == sid:
            found.append(int(entry))
    return found


async def _end_session(sid: int, timeout: float = 5) -> None:
    """SIGKILL to every process of the session until none is left (a Ray process may have
    a process group of its own)."""
    deadline = time.monotonic() + timeout
    while (left := _session(sid)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.05)


class LocalHead:
    def __init__(self, cache_dir: str) -> None:
        self.cache_dir = cache_dir
        self.dir = Path(cache_dir) / "ray-head"
        self.record = self.dir / "head.json"
        self.token = self.dir / "auth_token"
        self.proc: asyncio.subprocess.Process | None = None  # when this driver started it

    def temp_dir(self) -> str:
        own = self.dir / "tmp"
        if len(str(own)) <= _MAX_TEMP_DIR:
            return str(own)
        digest = hashlib.sha256(str(self.dir.resolve()).encode()).hexdigest()[:12]
        return f"/tmp/corral-{os.getuid()}/ray-{digest}"

    def env(self) -> dict[str, str]:
        """What the head, and each bridge to it, run with: alone on 127.0.0.1, and with Ray's
        token auth on a token of its own (0600 in the state dir), so another local user
        cannot run code through it, and a user's own ``~/.ray/auth_token`` (which Ray makes
        at a first local ``ray.init``, and which turns token auth on for a head started
        without a mode) changes nothing."""
        return {**os.environ, **ALONE, "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(self.token)}

    def _make_token(self) -> None:
        if self.token.exists():
            return
        fd = os.open(self.token, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(TOKEN_BYTES))

    def running(self) -> tuple[int, str] | None:
        """(pid, address) of the head this state dir started, when it still runs."""
        try:
            found = json.loads(self.record.read_text())
            pid, start, address = int(found["pid"]), int(found["start"]), str(found["address"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return (pid, address) if proctree.alive(pid, start) else None

    async def ensure(self) -> str:
        """The head's address, started first when none runs."""
        found = self.running()
        if found is not None:
            return found[1]
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._make_token()
        log = self.dir / "head.log"
        port = _free_port()
        argv = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--port",
                str(port), "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
                "--dashboard-port", str(_free_port()), "--ray-client-server-port",
                str(_free_port()), "--disable-usage-stats", "--temp-dir", self.temp_dir(),
                "--block"]
        with log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                env=self.env(), start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while READY not in log.read_bytes():
            if self.proc.returncode is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                await self.stop()
                raise DriverError(f"the local Ray head did not start: {' | '.join(tail)}",
                                  f"see {log}, or give ray.address a running cluster")
            await asyncio.sleep(0.2)
        address = f"127.0.0.1:{port}"
        self.record.write_text(json.dumps({"pid": self.proc.pid, "address": address,
                                           "start": proctree.start_time(self.proc.pid)}))
        return address

    async def stop(self) -> None:
        """SIGTERM to the head (it stops Ray's processes), then SIGKILL to its session."""
        found = self.running()
        pid = found[0] if found is not None else (self.proc.pid if self.proc else None)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while proctree.alive(pid, None) and time.monotonic() < deadline:
            if self.proc is not None and self.proc.pid == pid:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), 0.2)
            else:
                await asyncio.sleep(0.2)
        if self.proc is not None and self.proc.pid == pid:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        await _end_session(pid)
        with contextlib.suppress(FileNotFoundError):
            self.record.unlink()
