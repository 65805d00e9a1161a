"""The adapter interface: one small subclass of Tool per supervisor under test."""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from common import NotApplicable, ScenarioError, kill_pids, run


@dataclass
class Fleet:
    agent: str  # "idle" (S1/S2/S3/S5/S6) or "spam" (S4)
    n: int
    cmd: list[str]


@dataclass
class Inst:
    name: str
    pid: int | None
    running: bool


class Tool:
    name = ""
    role = "other"  # "baseline", "subject" (corral) or "other"
    has_status = True  # False: the tool has no status command (S1/S3/S6 are n/a)
    status_desc = ""  # the CLI polled for status, shown in the report
    config_desc = ""  # how the tool is configured, shown in the report

    def __init__(self, workdir: Path, tag: str) -> None:
        self.dir = workdir
        self.tag = tag
        self.env = dict(os.environ, BENCH_TAG=tag)
        self.fleet: Fleet | None = None
        self.popen: subprocess.Popen[bytes] | None = None

    # -- to implement
    def missing(self) -> str | None:
        """Why the tool cannot run here, or None."""
        return None

    def version(self) -> str:
        raise NotImplementedError

    def start(self, fleet: Fleet) -> None:
        """Write the config for ``fleet`` into self.dir and launch; return when launched."""
        raise NotImplementedError

    def status_cmd(self) -> list[str]:
        """The tool's own status command (S6, and polled by S1/S3)."""
        raise NotApplicable(f"{self.name} has no status command")

    def parse_status(self, stdout: str) -> list[Inst]:
        raise NotImplementedError

    def roots(self) -> list[int]:
        """PIDs of the supervisor's own top process(es)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the whole fleet and the supervisor with the tool's own command."""
        raise NotImplementedError

    def log_files(self) -> list[Path]:
        """S4: the files holding the fleet's output, oldest first."""
        raise NotImplementedError

    # -- shared
    def instances(self) -> list[Inst]:
        res = self.run(self.status_cmd(), check=False, timeout=60)
        return self.parse_status(res.stdout)

    def run(self, cmd: list[str], check: bool = True, timeout: float = 60):
        return run(cmd, self.env, self.dir, timeout=timeout, check=check)

    def spawn(self, cmd: list[str], out: Path) -> None:
        """Launch a foreground supervisor in its own session, output to ``out``."""
        with open(out, "wb") as f:
            self.popen = subprocess.Popen(
                cmd,
                cwd=self.dir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def cleanup(self) -> None:
        """Last resort after stop(): SIGKILL the supervisor by PID, reap our Popen."""
        with contextlib.suppress(OSError, ValueError, ScenarioError):
            kill_pids(self.roots())
        if self.popen is not None:
            self.popen.kill()
            self.popen.wait()


def read_pid(path: Path) -> list[int]:
    try:
        return [int(path.read_text().split()[0])]
    except (OSError, ValueError, IndexError):
        return []
