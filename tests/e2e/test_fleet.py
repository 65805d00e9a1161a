"""The real CLI and daemon: dependency order, health, restarts, reconcile, scale, down."""

from __future__ import annotations

import os
import signal
import time

from tests.e2e.conftest import Project, pids_with_marker, running

SERVICE = """\
import socket, sys, time
time.sleep(0.5)  # a slow start: dependents must wait for the probe, not for the process
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
print("service listening", flush=True)
while True:
    c, _ = s.accept(); c.close()
"""

JOB = """\
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
print("job reached the service", flush=True)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dependency_order_health_and_completion(project: Project) -> None:
    port = free_port()
    project.file("service.py", SERVICE)
    project.file("job.py", JOB)
    project.write(f"""
        name: deps
        agents:
          svc:
            class: service
            command: python3 service.py {port}
            readiness: {{tcp: {port}, period: 0.1s}}
          job:
            class: compute
            command: python3 job.py {port}
            depends_on:
              svc: {{condition: healthy}}
          after:
            class: compute
            command: python3 -c "print('after the job')"
            depends_on:
              job: {{condition: completed_successfully}}
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: r.get("after.1", {}).get("state") == "exited",
                            what="the chain to complete")
    assert rows["svc.1"]["state"] == "running"
    assert rows["svc.1"]["health"] == "healthy"
    assert rows["job.1"]["state"] == "exited"
    assert rows["job.1"]["exit_code"] == 0, rows["job.1"]
    assert rows["after.1"]["exit_code"] == 0
    messages = [r["message"] for r in project.records("job")]
    assert messages == ["job reached the service"]


def test_failed_dependency_is_fatal_for_dependents(project: Project) -> None:
    project.write("""
        name: failing
        agents:
          setup:
            class: compute
            command: python3 -c "import sys; sys.exit(3)"
            restart: "no"
          app:
            command: sleep 60
            depends_on:
              setup: {condition: completed_successfully}
    """)
    project.corral("up", "-d", check=False)
    rows = project.wait_for(lambda r: r["app.1"]["state"] == "fatal", what="app fatal")
    assert rows["setup.1"]["exit_code"] == 3
    assert "did not complete successfully" in rows["app.1"]["reason"]


def test_crash_loop_restarts_with_backoff_then_fatal(project: Project) -> None:
    project.write("""
        name: crashy
        agents:
          crasher:
            command: python3 -c "import sys; print('boom', flush=True); sys.exit(2)"
            restart:
              policy: on-failure
              max_restarts: 3
              window: 60s
              backoff: {initial: 0.1s, factor: 2, max: 1s}
    """)
    started = time.monotonic()
    project.corral("up", "-d", check=False)
    rows = project.wait_for(lambda r: r["crasher.1"]["state"] == "fatal", what="crash loop")
    elapsed = time.monotonic() - started
    row = rows["crasher.1"]
    assert row["restarts"] == 3
    assert row["exit_code"] == 2
    assert "crash loop: 3 restarts within 60s" in row["reason"]
    assert elapsed >= 0.1 + 0.2 + 0.4  # the three backoff delays really happened
    assert [r["message"] for r in project.records("crasher")] == ["boom"] * 4


def test_reconcile_restarts_only_changed_agents(project: Project) -> None:
    manifest = """
        name: recon
        agents:
          steady:
            command: sleep 300
          moving:
            command: sleep 300
            env: {{VERSION: "{v}"}}
    """
    project.write(manifest.format(v=1))
    project.corral("up", "-d")
    before = project.wait_for(lambda r: all(x["state"] == "running" for x in r.values()))
    project.write(manifest.format(v=2))
    out = project.corral("up", "-d").stdout
    after = project.wait_for(lambda r: all(x["state"] == "running" for x in r.values()))
    assert after["steady.1"]["pid"] == before["steady.1"]["pid"]
    assert after["moving.1"]["pid"] != before["moving.1"]["pid"]
    assert "moving.1" in out and "steady.1" not in out


def test_scale_up_and_down(project: Project) -> None:
    project.write("""
        name: scaling
        agents:
          pool:
            command: sleep 300
            replicas: 1
    """)
    project.corral("up", "-d")
    project.corral("scale", "pool=3")
    rows = project.wait_for(lambda r: len(r) == 3 and all(x["state"] == "running"
                                                          for x in r.values()))
    assert sorted(rows) == ["pool.1", "pool.2", "pool.3"]
    first = rows["pool.1"]["pid"]
    project.corral("scale", "pool=1")
    rows = project.ps()
    assert list(rows) == ["pool.1"]
    assert rows["pool.1"]["pid"] == first


def test_stop_start_restart_one_agent(project: Project) -> None:
    project.write("""
        name: control
        agents:
          a: {command: sleep 300}
          b: {command: sleep 300}
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: all(x["state"] == "running" for x in r.values()))
    project.corral("stop", "a")
    rows = project.ps()
    assert rows["a.1"]["state"] == "stopped"
    assert rows["b.1"]["state"] == "running"
    project.corral("start", "a")
    rows = project.wait_for(lambda r: r["a.1"]["state"] == "running")
    old = rows["b.1"]["pid"]
    project.corral("restart", "b.1")
    rows = project.wait_for(lambda r: r["b.1"]["state"] == "running" and r["b.1"]["pid"] != old)
    assert rows["b.1"]["restarts"] == 1


def test_start_and_restart_wait_until_running_and_say_when_not(project: Project) -> None:
    """``--wait`` returns once the instance runs, with its row: no ``ps`` polling needed; a
    start that fails is exit 1 with its reason, and ``--timeout`` bounds the wait."""
    project.write("""
        name: waiting
        agents:
          a: {command: sleep 300}
          broken: {command: no-such-command-here, restart: "no"}
          gate: {command: sleep 300, readiness: {exec: "false", period: 1s}}
          slow:
            command: sleep 300
            depends_on: {gate: {condition: healthy}}
        """)
    project.corral("up", "-d", "--timeout", "1", check=False)
    project.wait_for(lambda r: r["a.1"]["state"] == "running", what="a running")
    project.corral("stop", "a")
    out = project.corral("start", "--wait", "a").stdout
    assert out.startswith("a.1: running pid "), out
    pid = project.ps()["a.1"]["pid"]
    assert project.ps()["a.1"]["state"] == "running"
    out = project.corral("restart", "--wait", "a.1").stdout
    rows = project.ps()
    assert out.startswith("a.1: running pid ") and rows["a.1"]["pid"] != pid, out
    assert f"pid {rows['a.1']['pid']}" in out
    failed = project.corral("start", "--wait", "broken", check=False)
    assert failed.returncode == 1 and failed.stdout.startswith("broken.1: fatal ("), failed.stdout
    # gate never gets healthy: slow waits for ever; the timeout ends the wait, exit 1
    late = project.corral("start", "--wait", "--timeout", "0.3", "slow", check=False)
    assert late.returncode == 1 and "not ready after 0.3s" in late.stderr, late.stderr
    # the start asked of a waiting instance did not leave it deaf to the stop
    assert "stopped 4 instances" in project.corral("down", timeout=30).stdout


def test_down_leaves_no_process_even_when_agents_double_fork(project: Project) -> None:
    project.file("forker.py", """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                print("grandchild detached", os.getpid(), flush=True)
                time.sleep(300)
            os._exit(0)
        print("parent waiting", flush=True)
        time.sleep(300)
    """)
    project.write("""
        name: forks
        agents:
          forker:
            command: python3 forker.py
            replicas: 2
            stop: {timeout: 2s}
    """)
    project.corral("up", "-d")

    def detached() -> int:
        return sum("grandchild detached" in r["message"] for r in project.records("forker"))

    # wait for the double forks themselves: a count alone can be reached early by the short-
    # lived middle children, or by the helpers a `python3` shim (pyenv) runs before exec
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
            detached() < 2 or len(pids_with_marker(project.root)) < 4):
        time.sleep(0.1)
    assert detached() == 2, project.records("forker")
    assert len(pids_with_marker(project.root)) >= 4, project.ps()
    daemon = project.daemon_pid()
    project.corral("down")
    assert pids_with_marker(project.root) == []
    assert daemon is not None
    assert not running(daemon), "the daemon exits after down"


def test_liveness_failure_restarts_the_instance(project: Project) -> None:
    project.write("""
        name: live
        agents:
          stuck:
            command: sleep 300
            liveness:
              exec: "false"
              period: 0.1s
              failure_threshold: 2
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: r["stuck.1"]["restarts"] >= 1, what="a liveness restart")
    assert rows["stuck.1"]["health"] in ("unknown", "unhealthy")


def test_terminate_signal_and_exit_code_are_reported(project: Project) -> None:
    project.write("""
        name: sig
        agents:
          victim:
            command: sleep 300
            restart: "no"
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: r["victim.1"]["state"] == "running")
    os.kill(rows["victim.1"]["pid"], signal.SIGKILL)
    rows = project.wait_for(lambda r: r["victim.1"]["state"] == "exited")
    assert rows["victim.1"]["exit_signal"] == signal.SIGKILL
    assert "killed by SIGKILL" in rows["victim.1"]["reason"]


def test_dependents_with_restart_true_follow_a_restarted_dependency(project: Project) -> None:
    project.write("""
        name: follow
        agents:
          db: {command: sleep 300}
          app:
            command: sleep 300
            depends_on:
              db: {condition: started, restart: true}
          other:
            command: sleep 300
            depends_on: [db]
    """)
    project.corral("up", "-d")
    before = project.wait_for(lambda r: all(x["state"] == "running" for x in r.values()))
    project.corral("restart", "db")
    after = project.wait_for(lambda r: r["app.1"]["restarts"] == 1
                             and r["app.1"]["state"] == "running", what="app restarted")
    assert after["db.1"]["restarts"] == 1
    assert after["app.1"]["pid"] != before["app.1"]["pid"]
    assert after["other.1"]["pid"] == before["other.1"]["pid"], "restart: false stays up"


HTTP_SERVICE = """\
import http.server, sys, time
time.sleep(0.3)
print("warming up", flush=True)
time.sleep(0.3)
print("accepting requests now", flush=True)

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *a):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_log_ready_and_http_readiness_gate_dependents(project: Project) -> None:
    """`log_ready` waits for the dependency's ready_log_line; `healthy` for its http probe."""
    port = free_port()
    project.file("web.py", HTTP_SERVICE)
    project.write(f"""
        name: gates
        agents:
          web:
            class: service
            command: python3 web.py {port}
            ready_log_line: "accepting requests"
            readiness: {{http: {{port: {port}, path: /health}}, period: 0.1s}}
          on_line:
            class: compute
            command: python3 -c "print('after the line')"
            depends_on:
              web: {{condition: log_ready}}
          on_health:
            class: compute
            command: >-
              python3 -c "import urllib.request as u;
              u.urlopen('http://127.0.0.1:{port}/health'); print('served')"
            depends_on:
              web: {{condition: healthy}}
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: all(r.get(n, {}).get("state") == "exited"
                                          for n in ("on_line.1", "on_health.1")),
                            what="both dependents to complete")
    assert rows["on_line.1"]["exit_code"] == 0
    assert rows["on_health.1"]["exit_code"] == 0, project.records("on_health")
    assert rows["web.1"]["health"] == "healthy"
    web = [r for r in project.records("web") if r["message"] == "accepting requests now"]
    line = [r for r in project.records("on_line") if r["message"] == "after the line"]
    assert web and line, "both lines are logged"
    assert line[0]["timestamp"] >= web[0]["timestamp"], "started before the ready line"
