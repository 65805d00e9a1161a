"""The real CLI and daemon, compose's manners for part of a fleet: ``up AGENT...`` with its
dependencies (or ``--no-deps``), ``--force-recreate``, ``--build``, ``rm AGENT...``,
``--abort-on-container-exit`` and ``--exit-code-from``; ``ps``'s columns and filters."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from corral.drivers.container.engine import Engine
from tests.e2e.conftest import CORRAL, Project

FLEET = """
    name: some
    agents:
      db:
        command: sleep 600
      cache:
        command: sleep 600
        readiness: {tcp: PORT, period: 0.2s}
      web:
        command: sleep 600
        depends_on: [db]
      worker:
        command: sleep 600
        depends_on: [web]
"""


def _fleet(project: Project) -> None:
    project.write(FLEET.replace("PORT", "9"))


def test_up_agent_starts_it_and_its_dependencies_only(project: Project) -> None:
    _fleet(project)
    out = project.corral("up", "-d", "web").stdout
    rows = project.ps()
    assert sorted(rows) == ["db.1", "web.1"], rows
    assert rows["web.1"]["state"] == "running" and rows["db.1"]["state"] == "running"
    assert "worker" not in out and "cache" not in out
    # the next up of one more leaves the running ones as they are (same pids)
    pids = {n: r["pid"] for n, r in rows.items()}
    project.corral("up", "-d", "--no-deps", "worker")
    rows = project.ps()
    assert sorted(rows) == ["db.1", "web.1", "worker.1"]
    assert {n: rows[n]["pid"] for n in pids} == pids
    # a plain up creates the rest
    project.corral("up", "-d")
    assert sorted(project.ps()) == ["cache.1", "db.1", "web.1", "worker.1"]


def test_up_no_deps_starts_just_the_named(project: Project) -> None:
    _fleet(project)
    project.corral("up", "-d", "--no-deps", "worker")
    rows = project.ps()
    assert sorted(rows) == ["worker.1"]
    assert rows["worker.1"]["state"] == "running"


def test_up_agent_leaves_the_others_running_even_when_changed(project: Project) -> None:
    _fleet(project)
    project.corral("up", "-d")
    before = project.ps()
    project.write(FLEET.replace("PORT", "9").replace("sleep 600", "sleep 601"))
    report = project.corral("up", "-d", "db").stdout
    after = project.ps()
    assert after["db.1"]["pid"] != before["db.1"]["pid"]  # changed and named: recreated
    assert "db.1" in report
    for name in ("web.1", "worker.1", "cache.1"):  # changed, not named: untouched
        assert after[name]["pid"] == before[name]["pid"]
        assert after[name]["state"] == "running"


def test_force_recreate_restarts_unchanged_instances(project: Project) -> None:
    _fleet(project)
    project.corral("up", "-d")
    before = project.ps()
    project.corral("up", "-d")
    assert {n: r["pid"] for n, r in project.ps().items()} == {
        n: r["pid"] for n, r in before.items()}
    project.corral("up", "-d", "--force-recreate", "--no-deps", "web")
    after = project.ps()
    assert after["web.1"]["pid"] != before["web.1"]["pid"]
    assert after["web.1"]["state"] == "running"
    assert after["db.1"]["pid"] == before["db.1"]["pid"]
    project.corral("up", "-d", "--force-recreate")
    again = project.ps()
    assert all(again[n]["pid"] != after[n]["pid"] for n in again)


def test_unknown_agent_and_bad_flag_combinations(project: Project) -> None:
    _fleet(project)
    proc = project.corral("up", "-d", "wbe", check=False)
    assert proc.returncode == 4 and "did you mean 'web'?" in proc.stderr
    proc = project.corral("up", "-d", "nosuch", check=False)
    assert proc.returncode == 4
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "nosuch" in proc.stderr and "Traceback" not in proc.stderr
    proc = project.corral("up", "-d", "--abort-on-container-exit", check=False)
    assert proc.returncode == 2 and "-d cannot be combined" in proc.stderr
    proc = project.corral("up", "--no-deps", check=False)
    assert proc.returncode == 2 and "--no-deps" in proc.stderr
    proc = project.corral("up", "--exit-code-from", "ghost", check=False)
    assert proc.returncode == 4 and "ghost" in proc.stderr
    assert project.daemon_pid() is None  # refused before anything ran


def test_rm_stops_and_forgets_some_agents(project: Project) -> None:
    project.write("""
        name: rmtest
        agents:
          db:
            command: sleep 600
          flaky:
            class: compute
            command: python3 -c "import sys; sys.exit(7)"
            restart: "no"
          web:
            command: sleep 600
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: r.get("flaky.1", {}).get("state") == "exited",
                            what="flaky to exit")
    assert rows["flaky.1"]["exit_code"] == 7
    db_pid = rows["db.1"]["pid"]
    out = project.corral("rm", "flaky", "web").stdout
    assert out.splitlines() == ["flaky.1: removed", "web.1: removed"]
    rows = project.ps()
    assert sorted(rows) == ["db.1"] and rows["db.1"]["pid"] == db_pid
    proc = project.corral("start", "web", check=False)
    assert proc.returncode == 4 and "corral up web" in proc.stderr
    # forgotten: the next up creates them afresh (no last exit carried over)
    project.corral("up", "-d", "web")
    rows = project.ps()
    assert sorted(rows) == ["db.1", "web.1"]
    assert rows["web.1"]["state"] == "running" and rows["web.1"]["restarts"] == 0
    proc = project.corral("rm", "nosuch", check=False)
    assert proc.returncode == 4 and "nosuch" in proc.stderr
    proc = project.corral("rm", check=False)
    assert proc.returncode == 2


def test_rm_survives_a_daemon_restart(project: Project) -> None:
    import os
    import signal

    _fleet(project)
    project.corral("up", "-d")
    project.corral("rm", "cache")
    pid = project.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the agents stay; the next daemon re-adopts them
    subprocess.run([*CORRAL, "-f", str(project.manifest), "up", "-d", "--no-deps", "db"],
                   cwd=project.root, capture_output=True, timeout=120, check=True)
    assert sorted(project.ps()) == ["db.1", "web.1", "worker.1"]


def test_ps_shows_isolation_and_ports_and_filters(project: Project) -> None:
    project.write("""
        name: psfilter
        agents:
          web:
            command: sleep 600
            readiness: {tcp: 9, period: 0.2s}
          job:
            class: compute
            command: python3 -c "print('done')"
            restart: "no"
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: r.get("job.1", {}).get("state") == "exited", what="job")
    table = project.corral("ps").stdout.splitlines()
    head = table[0].split()
    assert head[:3] == ["NAME", "STATE", "ISOLATION"] and "PORTS" in head
    web = next(line for line in table if line.startswith("web.1"))
    assert "process" in web.split() and "9" in web.split()
    running = project.corral("ps", "--status", "running").stdout.splitlines()
    assert [line.split()[0] for line in running[1:]] == ["web.1"]
    rows = json.loads(project.corral("ps", "--json", "--status", "exited").stdout)
    assert [r["name"] for r in rows] == ["job.1"]
    assert rows[0]["isolation"] == "process" and rows[0]["ports"] == []
    both = json.loads(project.corral("ps", "--json", "--status", "exited",
                                      "--status=running").stdout)
    assert sorted(r["name"] for r in both) == ["job.1", "web.1"]
    assert json.loads(project.corral("ps", "--json", "--status", "running", "job").stdout) == []
    proc = project.corral("ps", "--status", "sleeping", check=False)
    assert proc.returncode == 2 and "sleeping" in proc.stderr


def test_ps_keeps_a_multi_line_reason_on_one_line(project: Project) -> None:
    project.file("requirements.txt", "definitely-not-a-package-corral-test==0.0.0\n")
    project.write("""
        name: multiline
        agents:
          broken:
            isolation: venv
            command: python3 -c "print(1)"
    """)
    up = project.corral("up", "-d", check=False)
    assert up.returncode == 1 and len(up.stdout.splitlines()) == 1, up.stdout
    rows = project.wait_for(lambda r: r.get("broken.1", {}).get("state") == "fatal",
                            timeout=120, what="the venv build to fail")
    reason = rows["broken.1"]["reason"]
    if "\n" not in reason:
        pytest.skip(f"this uv/pip gave a one-line error: {reason!r}")
    table = project.corral("ps").stdout.splitlines()
    assert len(table) == 2, table  # the head and one line for the instance
    assert table[1].startswith("broken.1") and table[1].endswith("…")
    assert reason.splitlines()[0].strip() in table[1]


def _taken_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_a_taken_metrics_port_fails_up(project: Project) -> None:
    with _taken_port() as taken:
        port = taken.getsockname()[1]
        project.write(f"""
            name: metricsport
            metrics: {{port: {port}}}
            agents:
              web:
                command: sleep 600
        """)
        proc = project.corral("up", "-d", check=False)
        assert proc.returncode == 1, proc
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and f"metrics port 127.0.0.1:{port}" in lines[0], lines
        assert "metrics.port" in lines[0] and "Traceback" not in proc.stderr
        assert project.daemon_pid() is None  # the daemon it started does not stay
    # freed: the same up works
    project.corral("up", "-d")
    assert project.ps()["web.1"]["state"] == "running"


ABORT_FLEET = """
    name: abort
    agents:
      server:
        command: sleep 600
      tests:
        class: compute
        command: python3 -c "import time, sys; time.sleep(1); print('tests ran'); sys.exit(3)"
        restart: "no"
        depends_on: [server]
"""


def _up_attached(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CORRAL, "-f", str(project.manifest), "up", *args],
                          cwd=project.root, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_abort_on_container_exit_stops_the_fleet_with_its_code(project: Project) -> None:
    project.write(ABORT_FLEET)
    proc = _up_attached(project, "--abort-on-container-exit")
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "tests ran" in proc.stdout
    assert "tests.1 exited with code 3" in proc.stderr
    assert "Aborting on container exit" in proc.stderr
    assert project.daemon_pid() is None  # as Ctrl-C: the fleet and its daemon are gone


def test_exit_code_from_gives_that_agents_code(project: Project) -> None:
    project.write(ABORT_FLEET)
    proc = _up_attached(project, "--exit-code-from", "tests")
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert project.daemon_pid() is None


def test_exit_code_from_an_agent_the_abort_stopped(project: Project) -> None:
    project.write(ABORT_FLEET)
    proc = _up_attached(project, "--exit-code-from", "server")
    # tests ended first; server was stopped by SIGTERM: 128 + 15, as compose's 143
    assert proc.returncode == 143, (proc.stdout, proc.stderr)


def test_abort_follows_only_the_agents_named(project: Project) -> None:
    project.write("""
        name: abortsome
        agents:
          setup:
            class: compute
            command: python3 -c "print('setup done')"
            restart: "no"
          app:
            class: compute
            command: python3 -c "import time; time.sleep(1.5); print('app done')"
            restart: "no"
            depends_on: {setup: {condition: completed_successfully}}
    """)
    # setup exits first, but only app is followed: its exit (0) ends the up
    proc = _up_attached(project, "--abort-on-container-exit", "app")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "app.1 exited with code 0" in proc.stderr
    assert "app done" in proc.stdout and "setup done" not in proc.stdout


def test_up_build_builds_container_images_first(project: Project,
                                                podman_engine: Engine) -> None:
    env = {"CORRAL_CONTAINER_ENGINE": "podman"}
    project.file("box/main.py", "print('built and ran')\n")
    project.write("""
        name: upbuild
        agents:
          box:
            isolation: container
            workdir: box
            class: compute
            restart: "no"
            command: [python, main.py]
    """)
    proc = project.corral("up", "-d", "--build", env=env)
    assert "box: localhost/corral-upbuild-box:" in proc.stdout  # corral build's line
    rows = project.wait_for(lambda r: r.get("box.1", {}).get("state") == "exited",
                            timeout=120, what="the box to run")
    assert rows["box.1"]["exit_code"] == 0
    assert [r["message"] for r in project.records("box")] == ["built and ran"]


def test_ctrl_c_of_up_agent_stops_only_what_it_started(project: Project) -> None:
    import signal

    project.write("""
        name: ctrlc
        agents:
          db:
            command: sleep 600
          web:
            command: python3 -u -c "import time; print('web up'); time.sleep(600)"
    """)
    project.corral("up", "-d", "db")
    db_pid = project.ps()["db.1"]["pid"]
    with subprocess.Popen([*CORRAL, "-f", str(project.manifest), "up", "--no-deps", "web"],
                          cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, stdin=subprocess.DEVNULL) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # its output is followed: Ctrl-C is handled from here
                if "web up" in line:
                    break
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
    rows = project.ps()  # the daemon stays: db runs on
    assert rows["web.1"]["state"] == "stopped"
    assert rows["db.1"]["state"] == "running" and rows["db.1"]["pid"] == db_pid
