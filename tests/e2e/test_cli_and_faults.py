"""CLI commands and bad input: one clear line, a non-zero exit, no traceback, nothing lost."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from tests.e2e.conftest import CORRAL, Project


def one_clear_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, "an error message is printed"
    assert lines[0].startswith("corral: ")
    return proc.stderr


def test_broken_manifest_reports_every_problem_with_paths(project: Project) -> None:
    project.write("""
        name: broken
        agents:
          web:
            comand: python3 app.py
            restart: sometimes
            depends_on: [dbb]
          db:
            command: sleep 1
    """)
    proc = project.corral("up", "-d", check=False)
    assert proc.returncode == 2
    err = one_clear_line(proc)
    assert "agents.web.comand: unknown key (did you mean 'command'?)" in err
    assert "agents.web.restart" in err
    assert "agents.web.depends_on.dbb: unknown agent (did you mean 'db'?)" in err
    assert project.daemon_pid() is None, "nothing runs for an invalid manifest"


def test_yaml_syntax_error_and_cycle(project: Project) -> None:
    project.write("name: x\nagents:\n  a: [\n")
    proc = project.corral("config", check=False)
    assert proc.returncode == 2
    assert "line" in one_clear_line(proc)
    project.write("""
        name: cyc
        agents:
          a: {command: sleep 1, depends_on: [b]}
          b: {command: sleep 1, depends_on: [a]}
    """)
    proc = project.corral("config", check=False)
    assert proc.returncode == 2
    assert "dependency cycle: a -> b -> a" in one_clear_line(proc)


def test_missing_manifest_and_no_daemon(tmp_path: Path) -> None:
    proc = subprocess.run([*CORRAL, "ps"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2  # no manifest to act on: usage
    assert "no corral.yaml" in one_clear_line(proc)
    (tmp_path / "corral.yaml").write_text("name: idle\nagents:\n  a: {command: sleep 1}\n")
    proc = subprocess.run([*CORRAL, "ps"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 3
    assert "daemon is not running" in one_clear_line(proc)
    assert "corral up -d" in proc.stderr


def test_unknown_agent_and_command_not_found(project: Project) -> None:
    project.write("""
        name: faults
        agents:
          good: {command: sleep 300}
          bad: {command: no-such-binary-corral --flag, restart: always}
    """)
    proc = project.corral("up", "-d", check=False)
    assert proc.returncode == 1
    assert "command not found: no-such-binary-corral" in proc.stdout
    rows = project.ps()
    assert rows["good.1"]["state"] == "running", "the others keep running"
    assert rows["bad.1"]["state"] == "fatal"
    proc = project.corral("stop", "nope", check=False)
    assert proc.returncode == 4
    assert "no agent or instance named 'nope'" in one_clear_line(proc)
    assert project.ps()["good.1"]["state"] == "running"


def test_killed_daemon_is_reported_and_a_new_up_recovers(project: Project) -> None:
    import os
    import signal

    project.write("name: dead\nagents:\n  a: {command: sleep 300}\n")
    project.corral("up", "-d")
    pid = project.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    proc = project.corral("ps", check=False)
    assert proc.returncode == 3
    one_clear_line(proc)
    project.corral("up", "-d")
    assert project.ps()["a.1"]["state"] == "running"


def test_probe_port_already_taken_is_refused(project: Project) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        project.write(f"""
            name: port
            agents:
              svc:
                class: service
                command: python3 -m http.server {port} --bind 127.0.0.1
                readiness: {{tcp: {port}, period: 0.2s}}
        """)
        proc = project.corral("up", "-d", check=False)
        assert proc.returncode == 1
        row = project.ps()["svc.1"]
        assert row["state"] == "fatal"
        assert f"port {port}" in row["reason"] and "already in use" in row["reason"]


def test_failed_venv_build_shows_the_tail(project: Project) -> None:
    project.file("app/requirements.txt", "corral-no-such-package-xyz==1.0\n")
    project.write("""
        name: badvenv
        agents:
          app:
            isolation: venv
            workdir: app
            command: python -c "print(1)"
    """)
    proc = project.corral("up", "-d", check=False)
    assert proc.returncode == 1
    row = project.ps()["app.1"]
    assert row["state"] == "fatal"
    assert "venv build failed" in row["reason"]
    assert "corral-no-such-package-xyz" in row["reason"]


def test_two_versions_of_one_library_side_by_side(project: Project) -> None:
    project.file("show_six.py", "import six, time\nprint('six', six.__version__, flush=True)\n"
                 "time.sleep(300)\n")
    for name, version in (("new", "1.16.0"), ("old", "1.15.0")):
        project.file(f"{name}/requirements.txt", f"six=={version}\n")
    project.write("""
        name: venvs
        agents:
          new:
            isolation: venv
            workdir: new
            replicas: 2
            command: python ../show_six.py
          old:
            isolation: venv
            workdir: old
            command: python ../show_six.py
    """)
    project.corral("up", "-d", timeout=300)
    project.wait_for(lambda r: len(r) == 3 and all(x["state"] == "running" for x in r.values()))
    def printed(agent: str) -> list[str]:
        return [r["message"] for r in project.records(agent) if r["stream"] == "stdout"]

    project.wait_for(lambda r: len(printed("new")) == 2 and printed("old"), what="versions")
    assert printed("new") == ["six 1.16.0", "six 1.16.0"]
    assert printed("old") == ["six 1.15.0"]
    progress = [r for r in project.records("old") if r["stream"] == "stderr"]
    building = [r["message"] for r in progress]
    assert any("building a venv" in m for m in building), "venv progress is shown in the logs"
    # progress (corral's and uv's) is not an error: stderr is info unless a line says a level
    assert {r["level"] for r in progress if "building a venv" in r["message"]} == {"info"}
    assert not [r for r in progress if r["level"] == "error"], progress
    out = project.corral("exec", "old", "--", "python", "-c",
                         "import six; print(six.__version__)").stdout
    assert out.strip() == "1.15.0"


def test_run_passes_the_exit_code_through(project: Project) -> None:
    project.write("""
        name: runner
        agents:
          job:
            class: compute
            command: python3 -c "import sys; print('ran'); sys.exit(7)"
    """)
    proc = project.corral("run", "job", check=False)
    assert proc.returncode == 7
    assert proc.stdout.strip() == "ran"


def test_init_config_and_schema(tmp_path: Path) -> None:
    proc = subprocess.run([*CORRAL, "init", "--class", "compute"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    again = subprocess.run([*CORRAL, "init"], cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 1 and "already exists" in again.stderr
    config = subprocess.run([*CORRAL, "config"], cwd=tmp_path, capture_output=True, text=True)
    assert config.returncode == 0, config.stderr
    assert "report:" in config.stdout and "policy: on-failure" in config.stdout
    schema = subprocess.run([*CORRAL, "schema"], cwd=tmp_path, capture_output=True, text=True)
    assert "agents" in json.loads(schema.stdout)["properties"]
    doctor = subprocess.run([*CORRAL, "doctor"], cwd=tmp_path, capture_output=True, text=True)
    assert "process" in doctor.stdout and "venv" in doctor.stdout


def test_attached_up_streams_prefixed_output_and_ctrl_c_stops_the_fleet(
        project: Project) -> None:
    import signal
    import time

    from tests.e2e.conftest import pids_with_marker

    project.write("""
        name: attached
        agents:
          ping:
            command: >-
              python3 -c "import time;
              [print('ping', i, flush=True) or time.sleep(0.05) for i in range(100000)]"
          pong:
            command: >-
              python3 -c "import time;
              [print('pong', i, flush=True) or time.sleep(0.05) for i in range(100000)]"
    """)
    proc = subprocess.Popen([*CORRAL, "-f", str(project.manifest), "up", "--no-color"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=project.root)
    assert proc.stdout is not None and proc.stderr is not None
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and seen != {"ping.1", "pong.1"}:
        line = proc.stdout.readline()
        prefix, sep, message = line.partition(" | ")
        if sep and message.startswith(("ping", "pong")):
            seen.add(prefix.strip())
    assert seen == {"ping.1", "pong.1"}
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130  # interrupted, as compose's: the fleet did not end by itself
    proc.stdout.close()
    assert "Gracefully stopping" in proc.stderr.read()
    proc.stderr.close()
    assert pids_with_marker(project.root) == []
    assert project.daemon_pid() is None
