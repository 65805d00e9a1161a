"""PM2 (npm), one app in fork mode with instances=N, started from an ecosystem file."""

from __future__ import annotations

import json
from pathlib import Path

from common import NPM_BIN, WORK
from tools.base import Fleet, Inst, Tool, read_pid


class PM2(Tool):
    name = "pm2"
    status_desc = "`pm2 jlist`"
    config_desc = (
        "ecosystem file, one app, exec_mode=fork, instances=N, interpreter=none, "
        "autorestart=true, restart_delay=0, out/err files per instance (merge_logs=false); "
        "PM2_HOME in the temp dir; stop = `pm2 kill`"
    )

    def __init__(self, workdir: Path, tag: str) -> None:
        super().__init__(workdir, tag)
        self.env["PM2_HOME"] = str(workdir / "pm2home")
        self.pm2 = str(NPM_BIN / "pm2")

    def missing(self) -> str | None:
        return None if (NPM_BIN / "pm2").exists() else "not installed: run bench/setup.sh"

    def version(self) -> str:
        pkg = WORK / "npm" / "node_modules" / "pm2" / "package.json"
        return "pm2 " + json.loads(pkg.read_text())["version"]

    def start(self, fleet: Fleet) -> None:
        self.fleet = fleet
        (self.dir / "logs").mkdir(exist_ok=True)
        app = {
            "name": fleet.agent,
            "script": fleet.cmd[0],
            "args": fleet.cmd[1:],
            "interpreter": "none",
            "exec_mode": "fork",
            "instances": fleet.n,
            "autorestart": True,
            "restart_delay": 0,
            "out_file": str(self.dir / "logs" / f"{fleet.agent}-out.log"),
            "error_file": str(self.dir / "logs" / f"{fleet.agent}-err.log"),
            "merge_logs": False,
        }
        eco = self.dir / "ecosystem.config.js"
        eco.write_text("module.exports = " + json.dumps({"apps": [app]}, indent=2) + ";\n")
        self.run([self.pm2, "start", str(eco)], timeout=600)

    def status_cmd(self) -> list[str]:
        return [self.pm2, "jlist"]

    def parse_status(self, stdout: str) -> list[Inst]:
        start = stdout.find("[")
        try:
            apps = json.loads(stdout[start:]) if start >= 0 else []
        except ValueError:
            return []
        return [
            Inst(
                f"{a['name']}-{a['pm_id']}",
                a.get("pid") or None,
                a.get("pm2_env", {}).get("status") == "online",
            )
            for a in apps
        ]

    def roots(self) -> list[int]:
        return read_pid(self.dir / "pm2home" / "pm2.pid")

    def stop(self) -> None:
        self.run([self.pm2, "kill"], timeout=300)

    def log_files(self) -> list[Path]:
        return sorted((self.dir / "logs").glob("spam-out*.log"))
