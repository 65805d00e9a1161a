"""corral: `corral up -d` a manifest with one agent of N replicas, `corral ps --json`."""

from __future__ import annotations

import json
from pathlib import Path

from common import REPO
from tools.base import Fleet, Inst, Tool, read_pid

CORRAL = REPO / ".venv" / "bin" / "corral"


class Corral(Tool):
    name = "corral"
    role = "subject"
    status_desc = "`corral ps --json`"
    config_desc = (
        "corral.yaml with one agent, replicas=N, restart {policy: always, backoff: {initial: 0}}, "
        "logs {max_size: 2G} (no rotation during S4); stop = `corral down`"
    )

    def corral(self, *args: str) -> list[str]:
        return [str(CORRAL), "-f", str(self.dir / "corral.yaml"), *args]

    def missing(self) -> str | None:
        if not CORRAL.exists():
            return f"{CORRAL} not found"
        res = self.run([str(CORRAL), "--help"], check=False, timeout=30)
        if res.returncode != 0 or " up" not in res.stdout:
            return "corral CLI not usable yet: " + (res.stderr.strip().splitlines() or ["?"])[-1]
        return None

    def version(self) -> str:
        res = self.run([str(CORRAL), "--version"], check=False)
        return res.stdout.strip() or "corral (version unknown)"

    def start(self, fleet: Fleet) -> None:
        self.fleet = fleet
        manifest = {
            "name": "bench",
            "logs": {"max_size": "2G"},
            "agents": {
                fleet.agent: {
                    "command": fleet.cmd,
                    "replicas": fleet.n,
                    "restart": {"policy": "always", "backoff": {"initial": 0}},
                }
            },
        }
        # JSON is valid YAML; it keeps the harness free of a YAML dependency
        (self.dir / "corral.yaml").write_text(json.dumps(manifest, indent=2) + "\n")
        self.run(self.corral("up", "-d"), timeout=600)

    def status_cmd(self) -> list[str]:
        return self.corral("ps", "--json")

    def parse_status(self, stdout: str) -> list[Inst]:
        start = stdout.find("[")
        try:
            items = json.loads(stdout[start:]) if start >= 0 else []
        except ValueError:
            return []
        return [Inst(i["name"], i.get("pid"), i.get("state") == "running") for i in items]

    def roots(self) -> list[int]:
        return read_pid(self.dir / ".corral" / "daemon.pid")

    def stop(self) -> None:
        self.run(self.corral("down"), timeout=300)

    def log_files(self) -> list[Path]:
        logs = self.dir / ".corral" / "logs"
        rotated = sorted(logs.glob("spam.log.*"), key=lambda p: -int(p.suffix[1:] or 0))
        return [*rotated, logs / "spam.log"]
