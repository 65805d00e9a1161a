"""One look at a running instance for a probe: a tcp connect, an http(s) status, an exec's
exit, a heartbeat file's age. Each says ``(passed, detail)`` in the words the probe's events
and ``corral ps`` show.

The supervisor's probes look from this host (``corral.runtime.health``, which keeps each
probe's loop, thresholds and timeout); a placed instance's are looked at where it runs (the
ray node actor, ``corral.drivers.ray.checks``). Both use these, so a check means the same
wherever it runs. Plain Python for that: it imports only the standard library and
``beneath`` (stdlib alike), so the ray bridge ships it by value and a node needs no corral.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import time
from collections.abc import Collection, Mapping

from corral.drivers.host.beneath import Escape, open_beneath


async def tcp(host: str, port: int) -> tuple[bool, str]:
    where = f"{host}:{port}"
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        return False, f"tcp {where}: {exc.strerror or exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, f"tcp {where} accepts connections"


async def http(host: str, port: int, path: str, scheme: str, status: Collection[int],
               timeout: float) -> tuple[bool, str]:
    """A GET of ``path``: passed when its status is one of ``status``."""
    request = f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
    try:
        if scheme == "https":
            line = await asyncio.get_running_loop().run_in_executor(
                None, https_status_line, host, port, request, timeout)
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
    except OSError as exc:  # ssl.SSLError (a certificate that does not verify) too
        return False, f"http {host}:{port}: {exc.strerror or exc}"
    parts = line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f"http {path}: not an HTTP response"
    code = int(parts[1])
    return code in status, f"http {path}: status {code}"


def https_status_line(host: str, port: int, request: bytes, timeout: float) -> bytes:
    """One https request's status line, blocking (run in a worker thread).

    Not ``asyncio.open_connection(ssl=...)``: the daemon imports asyncio without ssl (4 MB it
    would otherwise keep for a feature most fleets never use; see ``corral.daemon.entry``),
    which leaves asyncio's TLS support off. So ssl is imported here, on the first https
    probe, and verifies exactly as asyncio's default would (system CAs, the host name)."""
    import socket
    import ssl

    context = ssl.create_default_context()
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(request)
        with tls.makefile("rb") as stream:
            return stream.readline(1 << 16)


async def command(argv: list[str], env: Mapping[str, str], cwd: str,
                  shown: str | None = None) -> tuple[bool, str]:
    """``argv`` run to its end in a session of its own: passed on exit 0; the detail ends
    with its last line of output. Cancelled (its probe's timeout), the whole session is
    killed, so a check leaves nothing running."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)
    except OSError as exc:
        return False, f"exec {argv[0]}: {exc.strerror or exc}"
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    tail = out.decode(errors="replace").strip().splitlines()[-1:] if out else []
    detail = (f"exec {shown or argv[0]}: exit {proc.returncode}"
              + (f": {tail[0][:200]}" if tail else ""))
    return proc.returncode == 0, detail


def heartbeat(file: str, within: float, workdir: str, began: float = 0.0,
              now: float | None = None) -> tuple[bool, str]:
    """The heartbeat file's age, counted from the run's start at the earliest (a new run has
    ``within`` to make its first beat). The path is the agent's to make: it is walked from
    the workdir without following a link out of it, and looked at with ``O_PATH`` (never
    opened: a fifo cannot hang the check), so the probe tells only of a file in the workdir."""
    now = time.time() if now is None else now
    try:
        fd = open_beneath(workdir, file)
    except Escape as exc:
        return False, f"heartbeat {file}: {exc}"
    except FileNotFoundError:
        if now - began <= within:
            return True, f"heartbeat {file} not made yet"
        return False, f"heartbeat {file} not made within {within:g}s of the start"
    except OSError as exc:
        return False, f"heartbeat {file}: {exc.strerror or exc}"
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        return False, f"heartbeat {file} is not a regular file"
    age = now - max(st.st_mtime, began)
    if age > within:
        return False, f"heartbeat {file} not touched for {age:.0f}s (within: {within:g}s)"
    return True, f"heartbeat {file} touched {max(age, 0):.0f}s ago"
