"""The floor: bench/baseline.py (Popen + selectors), driven by a status file and signals."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from common import BENCH, PY, kill_pids
from tools.base import Fleet, Inst, Tool


class Baseline(Tool):
    name = "baseline"
    role = "baseline"
    status_desc = "`python -S bench/baseline.py status FILE` (reads the status file)"
    config_desc = (
        "bench/baseline.py: N children via Popen, one selector loop reading all pipes, each "
        "line written with a timestamp to one file, restart at once on SIGCHLD; stop = SIGTERM"
    )

    def version(self) -> str:
        return "bench/baseline.py"

    def start(self, fleet: Fleet) -> None:
        self.fleet = fleet
        # the command goes through a file: the tag in our argv would make us look like a child
        spec = self.dir / "cmd.json"
        spec.write_text(json.dumps(fleet.cmd))
        cmd = [
            PY,
            str(BENCH / "baseline.py"),
            "run",
            "--status",
            str(self.dir / "status.json"),
            "--log",
            str(self.dir / "out.log"),
            "--n",
            str(fleet.n),
            "--cmd",
            f"@{spec}",
        ]
        self.spawn(cmd, self.dir / "baseline.out")

    def status_cmd(self) -> list[str]:
        return [PY, "-S", str(BENCH / "baseline.py"), "status", str(self.dir / "status.json")]

    def parse_status(self, stdout: str) -> list[Inst]:
        out = []
        for line in stdout.splitlines():
            name, state, pid, *_ = line.split("\t")
            out.append(Inst(name, int(pid.split()[1]), state == "running"))
        return out

    def roots(self) -> list[int]:
        try:
            return [json.loads((self.dir / "status.json").read_text())["pid"]]
        except (OSError, ValueError, KeyError):
            return [self.popen.pid] if self.popen else []

    def stop(self) -> None:
        kill_pids(self.roots(), signal.SIGTERM)

    def log_files(self) -> list[Path]:
        return [self.dir / "out.log"]
