"""supervisord + supervisorctl, one [program] with numprocs=N."""

from __future__ import annotations

import shlex
from pathlib import Path

from common import VENV_BIN
from tools.base import Fleet, Inst, Tool, read_pid

CONF = """\
[unix_http_server]
file={d}/supervisor.sock

[supervisord]
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}/logs
minfds=4096

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{d}/supervisor.sock

[program:{agent}]
command={cmd}
numprocs={n}
process_name=%(program_name)s_%(process_num)03d
autorestart=true
startsecs=0
startretries=1000000
redirect_stderr=true
stdout_logfile={d}/logs/%(program_name)s_%(process_num)03d.log
stdout_logfile_maxbytes=0
"""


class Supervisord(Tool):
    name = "supervisord"
    status_desc = "`supervisorctl status`"
    config_desc = (
        "one [program] with numprocs=N, autorestart=true, startsecs=0, startretries=1000000, "
        "stdout to one file per process (maxbytes=0: no rotation); stop = "
        "`supervisorctl shutdown`"
    )

    @property
    def conf(self) -> Path:
        return self.dir / "supervisord.conf"

    def missing(self) -> str | None:
        return None if (VENV_BIN / "supervisord").exists() else "not installed: run bench/setup.sh"

    def version(self) -> str:
        return (
            "supervisord " + self.run([str(VENV_BIN / "supervisord"), "--version"]).stdout.strip()
        )

    def start(self, fleet: Fleet) -> None:
        self.fleet = fleet
        (self.dir / "logs").mkdir(exist_ok=True)
        cmd = shlex.join(fleet.cmd)
        self.conf.write_text(CONF.format(d=self.dir, agent=fleet.agent, cmd=cmd, n=fleet.n))
        self.run([str(VENV_BIN / "supervisord"), "-c", str(self.conf)])

    def status_cmd(self) -> list[str]:
        return [str(VENV_BIN / "supervisorctl"), "-c", str(self.conf), "status"]

    def parse_status(self, stdout: str) -> list[Inst]:
        out = []
        for line in stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and ":" in parts[0]:
                pid = int(parts[3].rstrip(",")) if parts[2:3] == ["pid"] else None
                out.append(Inst(parts[0], pid, parts[1] == "RUNNING"))
        return out

    def roots(self) -> list[int]:
        return read_pid(self.dir / "supervisord.pid")

    def stop(self) -> None:
        self.run([str(VENV_BIN / "supervisorctl"), "-c", str(self.conf), "shutdown"], timeout=120)

    def log_files(self) -> list[Path]:
        return sorted((self.dir / "logs").glob("*_[0-9][0-9][0-9].log"))
