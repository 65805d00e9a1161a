"""One check of a probe, run on the node where the instance runs (``node.Node.probe``): tcp,
http(s), exec and heartbeat, said as the supervisor's own checks say them
(``corral.runtime.health``). The supervisor keeps the probe's loop, its thresholds and what a
failure does; only the look at the instance happens here, where its loopback, its files and
its processes are.

Plain Python on purpose, like ``node``: shipped by value, so a node needs no corral.
``check`` is the description ``driver.describe`` makes of a probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import time
from typing import Any


async def run_check(check: dict[str, Any], cwd: str, env: dict[str, str],
                    began: float) -> tuple[bool, str]:
    """(passed, detail) of one check, bounded by its timeout. ``began``: the run's start on
    this node's clock (a heartbeat file is counted from then at the earliest)."""
    kind, timeout = check["kind"], float(check["timeout"])
    if kind == "heartbeat":
        return heartbeat(os.path.join(cwd, check["file"]), cwd, check["file"],
                         float(check["within"]), began)
    look = {"tcp": _tcp, "http": _http, "exec": _exec}[kind]
    try:
        return await asyncio.wait_for(look(check, cwd, env), timeout)
    except TimeoutError:
        return False, f"{kind} check timed out after {timeout:g}s"


async def _tcp(check: dict[str, Any], cwd: str, env: dict[str, str]) -> tuple[bool, str]:
    where = f"{check['host']}:{check['port']}"
    try:
        _, writer = await asyncio.open_connection(check["host"], int(check["port"]))
    except OSError as exc:
        return False, f"tcp {where}: {exc.strerror or exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, f"tcp {where} accepts connections"


async def _http(check: dict[str, Any], cwd: str, env: dict[str, str]) -> tuple[bool, str]:
    host, port, path = check["host"], int(check["port"]), check["path"]
    request = f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
    try:
        if check["scheme"] == "https":
            line = await asyncio.to_thread(_https_status_line, host, port, request,
                                           float(check["timeout"]))
        else:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request)
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except OSError as exc:
        return False, f"http {host}:{port}: {exc.strerror or exc}"
    parts = line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f"http {path}: not an HTTP response"
    status = int(parts[1])
    return status in check["status"], f"http {path}: status {status}"


def _https_status_line(host: str, port: int, request: bytes, timeout: float) -> bytes:
    import socket
    import ssl

    context = ssl.create_default_context()
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(request)
        with tls.makefile("rb") as stream:
            return stream.readline(1 << 16)


async def _exec(check: dict[str, Any], cwd: str, env: dict[str, str]) -> tuple[bool, str]:
    argv: list[str] = check["command"]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)
    except OSError as exc:
        return False, f"exec {argv[0]}: {exc.strerror or exc}"
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:  # its timeout: the check and what it started end
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    tail = out.decode(errors="replace").strip().splitlines()[-1:] if out else []
    detail = f"exec {argv[0]}: exit {proc.returncode}" + (f": {tail[0][:200]}" if tail else "")
    return proc.returncode == 0, detail


def heartbeat(path: str, cwd: str, file: str, within: float, began: float,
              now: float | None = None) -> tuple[bool, str]:
    """The heartbeat file's age, from the run's start at the earliest. Only a file inside the
    workdir counts (a link out of it is refused), looked at with ``lstat`` (never opened:
    a fifo cannot hang the check)."""
    now = time.time() if now is None else now
    real, root = os.path.realpath(path), os.path.realpath(cwd)
    if os.path.commonpath([real, root]) != root:
        return False, f"heartbeat {file}: leads out of the workdir"
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        if now - began <= within:
            return True, f"heartbeat {file} not made yet"
        return False, f"heartbeat {file} not made within {within:g}s of the start"
    except OSError as exc:
        return False, f"heartbeat {file}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return False, f"heartbeat {file} is not a regular file"
    age = now - max(st.st_mtime, began)
    if age > within:
        return False, f"heartbeat {file} not touched for {age:.0f}s (within: {within:g}s)"
    return True, f"heartbeat {file} touched {max(age, 0):.0f}s ago"
