"""The real CLI and daemon in a temp dir. Every daemon a test starts is stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CORRAL = [sys.executable, "-m", "corral.cli.main"]


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest = root / "corral.yaml"

    def write(self, text: str) -> None:
        self.manifest.write_text(textwrap.dedent(text))

    def file(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def corral(self, *args: str, check: bool = True, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*CORRAL, "-f", str(self.manifest), *args], cwd=self.root,
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def ps(self) -> dict[str, dict[str, Any]]:
        rows = json.loads(self.corral("ps", "--json").stdout)
        return {r["name"]: r for r in rows}

    def wait_for(self, predicate: Callable[[dict[str, dict[str, Any]]], bool],
                 timeout: float = 30, what: str = "condition") -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        rows: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            rows = self.ps()
            if predicate(rows):
                return rows
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; last ps: "
                             f"{json.dumps(rows, indent=1)}\n{self.daemon_log()}")

    @property
    def state_dir(self) -> Path:
        return self.root / ".corral"

    def daemon_pid(self) -> int | None:
        try:
            return int((self.state_dir / "daemon.pid").read_text())
        except (OSError, ValueError):
            return None

    def daemon_log(self) -> str:
        path = self.state_dir / "daemon.log"
        return path.read_text() if path.exists() else ""

    def records(self, agent: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        logs = self.state_dir / "logs"
        for path in sorted(logs.glob(f"{agent}.log*"), reverse=True):
            out.extend(json.loads(line) for line in path.read_text().splitlines() if line)
        return out


def pids_with_marker(root: Path) -> list[int]:
    """Processes whose environment ties them to this project (CORRAL_STATE_DIR under root)."""
    found = []
    needle = f"CORRAL_STATE_DIR={root}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            env = Path(f"/proc/{name}/environ").read_bytes()
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        if needle in env and stat.rsplit(b")", 1)[1].split()[0] != b"Z":
            found.append(int(name))
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited daemon may wait for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def tear_down(p: Project, root: Path) -> None:
    """``down``, then by PID whatever is left: the daemon, and any process of the project's."""
    pid = p.daemon_pid()
    if pid is not None:
        subprocess.run([*CORRAL, "-f", str(p.manifest), "down"], cwd=root,
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for leftover in pids_with_marker(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(leftover, signal.SIGKILL)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project(tmp_path)
    yield p
    tear_down(p, tmp_path)
