"""Starting, finding and stopping a project's daemon from the CLI."""

from __future__ import annotations

import os
import sys
import time

from corral import paths
from corral.api.client import Client
from corral.errors import CorralError

TYPE_CHECKING = False  # not typing's: ``corral ps`` imports this module on every poll
if TYPE_CHECKING:
    import subprocess


def client(state_dir: str, timeout: float | None = 60.0) -> Client:
    return Client(paths.socket_path(state_dir), timeout=timeout)


def _daemon_env() -> dict[str, str]:
    """The daemon's environment: the clean base of this shell's (an allow-list: see
    ``corral.environ``) and corral's own settings. Same-user processes can read
    /proc/PID/environ; secrets and what ``inherit_env`` names reach the daemon with
    ``corral up`` instead, in memory only."""
    from corral.environ import daemon_environment

    return daemon_environment(os.environ)


def spawn_daemon(state_dir: str) -> subprocess.Popen[bytes] | None:
    """Start the project's daemon unless one answers already; do not wait for it."""
    import subprocess

    if client(state_dir).alive():
        return None
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    with open(paths.daemon_log(state_dir), "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "corral.daemon", "--state-dir", state_dir],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            close_fds=True, cwd="/", env=_daemon_env(),
        )


def stop_booting(state_dir: str, proc: subprocess.Popen[bytes]) -> None:
    """Undo ``spawn_daemon`` (the manifest turned out invalid)."""
    c = client(state_dir)
    deadline = time.monotonic() + 15
    while proc.poll() is None and time.monotonic() < deadline:
        if c.alive():
            c.shutdown(stop_fleet=False, timeout=15)
            break
        time.sleep(0.005)
    try:
        proc.wait(15)
    except Exception:
        proc.kill()
        proc.wait()


def ensure_daemon(state_dir: str, booting: subprocess.Popen[bytes] | None = None) -> Client:
    c = client(state_dir)
    proc = booting or spawn_daemon(state_dir)
    if proc is None:
        return c
    log_path = paths.daemon_log(state_dir)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if c.alive():
            return c
        code = proc.poll()
        if code is not None:
            if c.alive():  # another `up` won the race and its daemon serves us
                return c
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
