"""``corral export make`` and ``corral import procfile`` through the CLI, and a process-level
fleet really run through the exported Makefile: ``make up`` starts it in dependency order
(a server that is ready only once it listens, a job the workers wait to complete, a venv
agent), twice is a no-op, ``make ps``/``make logs`` show it, ``make down`` leaves nothing
running, twice too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Project, pids_with_marker
from tests.support.validate_make import check_make

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("setsid") is None,
                                reason="make and setsid (util-linux) are needed")

SERVER = """\
import os, socket, sys, time
time.sleep(0.5)  # not ready at once: the job must wait for the readiness probe
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
open("events", "a").write("db listening\\n")
print("db up,", os.environ["GREETING"], flush=True)
while True:
    s.accept()[0].close()
"""
JOB = """\
import os, socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()
open("events", "a").write("migrate done\\n")
print("migrated", os.environ["CORRAL_INSTANCE"], flush=True)
"""
WORKER = """\
import os, sys, time
events = open("events").read()
assert "migrate done" in events, events
open("events", "a").write(f"{os.environ['CORRAL_INSTANCE']} {sys.prefix != sys.base_prefix}"
                          f" {os.environ.get('TOKEN')}\\n")
print("working", os.environ["CORRAL_INSTANCE"], flush=True)
while True:
    time.sleep(1)
"""


def _make(out: Path, *targets: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(out), *targets],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"make {' '.join(targets)}:\n{proc.stdout}{proc.stderr}"
    return proc


def _lines(path: Path, count: int) -> list[str]:
    """The file's lines once it has ``count`` (the agents write theirs after make returns)."""
    import time

    deadline = time.monotonic() + 60
    lines = path.read_text().splitlines()
    while len(lines) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        lines = path.read_text().splitlines()
    return lines


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_fleet_runs_through_the_exported_makefile(project: Project) -> None:
    port = _free_port()
    project.file("db.py", SERVER)
    project.file("migrate.py", JOB)
    project.file("worker.py", WORKER)
    project.file("venvy/requirements.txt", "# nothing to install\n")
    project.file("venvy/worker.py", WORKER.replace('open("events"', 'open("../events"'))
    project.write(f"""\
        name: shop
        secrets:
          token: {{environment: SHOP_TOKEN}}
        agents:
          db:
            command: python3 db.py {port}
            env: {{GREETING: "it's $$HOME"}}
            readiness: {{tcp: {port}, period: 0.2}}
          migrate:
            command: python3 migrate.py {port}
            restart: "no"
            depends_on: {{db: {{condition: healthy}}}}
          worker:
            command: python3 worker.py
            replicas: 2
            secrets: [{{source: token, env: TOKEN}}]
            depends_on: {{migrate: {{condition: completed_successfully}}}}
          venvy:
            isolation: venv
            workdir: venvy
            command: python worker.py
            depends_on: {{migrate: {{condition: completed_successfully}}}}
        """)
    out = project.root / "export" / "make"
    report = json.loads(project.corral("export", "make", "--report", "json").stdout)
    assert report["kind"] == "export make"
    assert {"agent": "db", "field": "restart", "outcome": "dropped"}.items() <= \
        next(x for x in report["losses"] if x["agent"] == "db").items()
    assert check_make(out) == ["db", "migrate", "worker", "venvy"]
    secret = {"SHOP_TOKEN": "s3cret"}
    try:
        up = _make(out, "up", env=secret).stdout
        assert "venvy: building its venv" in up
        events = _lines(project.root / "events", 5)
        assert events[:2] == ["db listening", "migrate done"]
        assert sorted(events[2:]) == ["venvy.1 True None",
                                      "worker.1 False s3cret", "worker.2 False s3cret"]
        again = _make(out, "up", env=secret).stdout
        assert "db.1: running" in again and "migrate.1: completed" in again
        assert "building its venv" not in again  # the stamp is newer than requirements.txt
        ps = _make(out, "ps").stdout
        rows = {line.split()[0]: line.split()[1] for line in ps.splitlines()[1:]}
        assert rows == {"db.1": "running", "migrate.1": "exited(0)", "worker.1": "running",
                        "worker.2": "running", "venvy.1": "running"}
        _lines(project.root / "events", 5)
        logs = _make(out, "logs").stdout
        assert "db up, it's $HOME" in logs and "migrated migrate.1" in logs
        assert "working worker.2" in _make(out, "logs-worker").stdout
        assert "s3cret" not in "".join(
            (out / f).read_text() for f in (out / ".corral-export").read_text().splitlines()[1:])
        _make(out, "restart-db")
        assert pids_with_marker(project.root)
    finally:
        down = _make(out, "down").stdout
    assert "db.1: stopped" in down and "worker.2: stopped" in down
    assert pids_with_marker(project.root) == []
    assert "db.1: not running" in _make(out, "down").stdout
    assert (out / ".make" / "venv" / "venvy" / ".stamp").exists()


def test_a_failed_job_stops_its_dependents_from_starting(project: Project) -> None:
    project.file("fail.py", "import sys\nprint('no')\nsys.exit(3)\n")
    project.write("""\
        name: f
        agents:
          job: {command: python3 fail.py, restart: "no"}
          after: {command: sleep 60, depends_on: {job: {condition: completed_successfully}}}
        """)
    project.corral("export", "make")
    out = project.root / "export" / "make"
    proc = subprocess.run(["make", "-C", str(out), "up"], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0
    assert "job.1: failed (exit 3" in proc.stderr
    assert "after.1: started" not in proc.stdout
    assert pids_with_marker(project.root) == []


def test_a_procfile_imports_loads_and_exports(project: Project) -> None:
    project.file("Procfile", "web: python3 -m http.server $PORT\nQueue_1: echo q\n")
    project.file(".env", "PORT=6000\n")
    proc = project.corral("import", "procfile", "--report", "json")
    report = json.loads(proc.stdout)
    assert {"agent": "queue_1", "field": "name", "outcome": "changed"}.items() <= \
        next(x for x in report["losses"] if x["field"] == "name").items()
    config = project.corral("config").stdout
    assert "queue_1:" in config and "PORT: '6100'" in config
    again = project.corral("import", "procfile", check=False)
    assert again.returncode != 0 and "exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    project.corral("export", "make")
    assert check_make(project.root / "export" / "make") == ["web", "queue_1"]


def test_stop_signals_timeouts_and_exec_readiness(project: Project) -> None:
    """SIGINT reaches an agent started in the background (bash would have it ignored), an
    agent that ignores its stop signal is SIGKILLed after the timeout, an exec probe runs in
    the agent's workdir with its environment, and a ready line is waited for."""
    project.write("""\
        name: sig
        agents:
          a:
            command: sh -c 'sleep 1; touch ready-$$CORRAL_INSTANCE; exec sleep 100'
            env: {FLAG: "yes"}
            replicas: 2
            readiness:
              exec: 'sh -c "test -f ready-$$CORRAL_INSTANCE && test $$FLAG = yes"'
              period: 0.3
            stop: {signal: SIGINT, timeout: 20s}
          b:
            command: sh -c 'trap "" TERM; echo go; exec sleep 100'
            ready_log_line: "^go$"
            stop: {timeout: 1s}
            depends_on: {a: {condition: healthy}}
        """)
    project.corral("export", "make")
    out = project.root / "export" / "make"
    try:
        up = _make(out, "up").stdout
        assert up.index("a.2: ready") < up.index("b.1: started") < up.index("b.1: ready")
        assert (project.root / "ready-a.1").exists() and (project.root / "ready-a.2").exists()
    finally:
        down = _make(out, "down").stdout
    assert "b.1: killed after 1s" in down
    assert "a.1: stopped" in down and "a.1: killed" not in down
    assert pids_with_marker(project.root) == []
