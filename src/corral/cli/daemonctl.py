"""Starting, finding and stopping a project's daemon from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from corral import paths
from corral.api.client import Client
from corral.errors import CorralError


def client(state_dir: str, timeout: float | None = 60.0) -> Client:
    return Client(paths.socket_path(state_dir), timeout=timeout)


def ensure_daemon(state_dir: str) -> Client:
    c = client(state_dir)
    if c.alive():
        return c
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    log_path = paths.daemon_log(state_dir)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "corral.daemon", "--state-dir", state_dir],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            close_fds=True, cwd="/",
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if c.alive():
            return c
        code = proc.poll()
        if code is not None:
            raise CorralError(f"the corral daemon exited at start (code {code}): "
                              f"{_tail(log_path)}", f"see {log_path}")
        time.sleep(0.005)
    raise CorralError("the corral daemon did not come up within 15s", f"see {log_path}")


def daemon_pid(state_dir: str) -> int | None:
    try:
        with open(paths.pid_file(state_dir)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def wait_gone(pid: int | None, timeout: float) -> bool:
    if pid is None:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    return True
        except OSError:
            return True
        time.sleep(0.005)
    return False


def _tail(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f.read().splitlines() if line.strip()]
    except OSError:
        return "(no daemon log)"
    return lines[-1] if lines else "(empty daemon log)"
