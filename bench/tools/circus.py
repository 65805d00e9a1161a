"""circusd + circusctl, one [watcher] with numprocesses=N."""

from __future__ import annotations

import shlex
from pathlib import Path

from common import VENV_BIN
from tools.base import Fleet, Inst, Tool, read_pid

CONF = """\
[circus]
endpoint = ipc://{d}/ctl.sock
pubsub_endpoint = ipc://{d}/pub.sock
stats_endpoint = ipc://{d}/stats.sock
logoutput = {d}/circusd.log

[watcher:{agent}]
cmd = {cmd}
numprocesses = {n}
respawn = true
{streams}
"""
STREAMS = """\
stdout_stream.class = FileStream
stdout_stream.filename = {d}/logs/{agent}.log
stderr_stream.class = FileStream
stderr_stream.filename = {d}/logs/{agent}.err.log
"""


class Circus(Tool):
    name = "circus"
    status_desc = "`circusctl list <watcher>` (its pids)"
    config_desc = (
        "one [watcher] with numprocesses=N, respawn=true (defaults otherwise, check_delay=1s); "
        "S4 output through a FileStream: one stream (file) per watcher, shared by its processes "
        "(circus has no per-process stream); stop = `circusctl quit`"
    )

    @property
    def endpoint(self) -> str:
        return f"ipc://{self.dir}/ctl.sock"

    def ctl(self, *args: str) -> list[str]:
        return [str(VENV_BIN / "circusctl"), "--endpoint", self.endpoint, *args]

    def missing(self) -> str | None:
        return None if (VENV_BIN / "circusd").exists() else "not installed: run bench/setup.sh"

    def version(self) -> str:
        return "circus " + self.run([str(VENV_BIN / "circusd"), "--version"]).stdout.strip()

    def start(self, fleet: Fleet) -> None:
        self.fleet = fleet
        (self.dir / "logs").mkdir(exist_ok=True)
        streams = STREAMS.format(d=self.dir, agent=fleet.agent) if fleet.agent == "spam" else ""
        conf = self.dir / "circus.ini"
        conf.write_text(
            CONF.format(
                d=self.dir,
                agent=fleet.agent,
                cmd=shlex.join(fleet.cmd),
                n=fleet.n,
                streams=streams,
            )
        )
        pidfile = str(self.dir / "circusd.pid")
        self.run([str(VENV_BIN / "circusd"), "--daemon", "--pidfile", pidfile, str(conf)])

    def status_cmd(self) -> list[str]:
        assert self.fleet is not None
        return self.ctl("list", self.fleet.agent)

    def s6_extra(self) -> dict[str, list[str]]:
        return {"circusctl status (watcher-level only)": self.ctl("status")}

    def parse_status(self, stdout: str) -> list[Inst]:
        text = stdout.strip()
        if not text or not all(p.strip().isdigit() for p in text.split(",")):
            return []
        return [Inst(p, int(p), True) for p in text.split(",")]

    def roots(self) -> list[int]:
        return read_pid(self.dir / "circusd.pid")

    def stop(self) -> None:
        self.run(self.ctl("quit"), timeout=120)

    def log_files(self) -> list[Path]:
        return [self.dir / "logs" / "spam.log"]
