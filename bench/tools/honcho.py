"""honcho: `honcho start` with a Procfile and -c agent=N, in the foreground, output to a file."""

from __future__ import annotations

import shlex
import signal
from pathlib import Path

from common import VENV_BIN, kill_pids
from tools.base import Fleet, Tool


class Honcho(Tool):
    name = "honcho"
    has_status = False
    status_desc = "none (honcho has no status command)"
    config_desc = (
        "Procfile with one process type, `honcho start -c agent=N`, stdout to a file; honcho "
        "runs each entry via /bin/sh -c (S2 counts those sh wrappers as honcho's); "
        "no restart policy (a child's exit stops the set); stop = SIGTERM to honcho"
    )

    def missing(self) -> str | None:
        return None if (VENV_BIN / "honcho").exists() else "not installed: run bench/setup.sh"

    def version(self) -> str:
        return self.run([str(VENV_BIN / "honcho"), "--version"]).stdout.strip()

    def start(self, fleet: Fleet) -> None:
        self.fleet = fleet
        procfile = self.dir / "Procfile"
        procfile.write_text(f"{fleet.agent}: {shlex.join(fleet.cmd)}\n")
        cmd = [
            str(VENV_BIN / "honcho"),
            "start",
            "-f",
            str(procfile),
            "-d",
            str(self.dir),
            "-c",
            f"{fleet.agent}={fleet.n}",
        ]
        self.spawn(cmd, self.dir / "honcho.out")

    def roots(self) -> list[int]:
        return [self.popen.pid] if self.popen else []

    def stop(self) -> None:
        kill_pids(self.roots(), signal.SIGTERM)

    def log_files(self) -> list[Path]:
        return [self.dir / "honcho.out"]
