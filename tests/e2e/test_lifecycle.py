"""The real CLI and daemon across runs of the fleet: ``down`` ends a generation (jobs run
again, nothing of the old run meets a condition), ``restart: true`` dependents follow their
dependency (re-running the job between them first), and ``--wait`` means ready."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Project, tear_down

Rows = dict[str, dict[str, Any]]

# An in-memory key-value store: what it held is gone when it restarts (as an S3 store in a
# tmpfs, a cache). SET k v, GET k (-> the value, or "nil").
STORE = """\
import socket, sys, threading
data = {}
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
print("store listening", flush=True)
def serve(c):
    with c:
        words = c.recv(256).decode().split()
        if words[:1] == ["SET"]:
            data[words[1]] = words[2]; c.sendall(b"OK")
        elif words[:1] == ["GET"]:
            c.sendall(data.get(words[1], "nil").encode())
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

CLIENT = """\
import socket
def ask(port, *words):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
        c.sendall(" ".join(words).encode())
        return c.recv(256).decode()
"""

# the job: makes the bucket in the store, and counts its runs in a file
MAKE_BUCKET = """\
import sys
from client import ask
ask(int(sys.argv[1]), "SET", "bucket", "made")
with open("job-runs.txt", "a") as f:
    f.write("ran\\n")
print("bucket made", flush=True)
"""

# the dependent: crashes (as boto3's NoSuchBucket) when the bucket is not there; says what it
# found at each start
APP = """\
import sys, time
from client import ask
found = ask(int(sys.argv[1]), "GET", "bucket")
runs = open("job-runs.txt").read().count("ran")
with open("app-starts.txt", "a") as f:
    f.write(f"{found} after {runs} job runs\\n")
if found != "made":
    sys.exit("NoSuchBucket")
while True:
    time.sleep(1)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fleet(project: Project, port: int, *, restart: bool = False,
           crasher: bool = False) -> None:
    for name, text in (("store.py", STORE), ("client.py", CLIENT),
                       ("make_bucket.py", MAKE_BUCKET), ("app.py", APP)):
        project.file(name, text)
    follow = ", restart: true" if restart else ""
    extra = """
          crasher:
            command: sh -c 'test ! -e crash || exit 3; sleep 300'
            restart: {policy: on-failure, backoff: {initial: 0.2s}}
    """ if crasher else ""
    project.write(f"""
        name: generations
        agents:
          store:
            class: service
            command: python3 store.py {port}
            readiness: {{tcp: {port}, period: 0.2s}}
          bucket:
            class: compute
            command: python3 make_bucket.py {port}
            depends_on:
              store: {{condition: healthy}}
          app:
            command: python3 app.py {port}
            restart: {{policy: on-failure, backoff: {{initial: 0.2s}}}}
            depends_on:
              store: {{condition: healthy{follow}}}
              bucket: {{condition: completed_successfully}}
    """ + extra)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _app_started(project: Project, times: int) -> Callable[[Rows], bool]:
    """The app runs, and has said what it found at its ``times``-th start."""
    starts = project.root / "app-starts.txt"
    return lambda rows: (rows.get("app.1", {}).get("state") == "running"
                         and len(_lines(starts)) == times)


def test_up_after_down_reruns_jobs_and_forgets_the_old_run(project: Project) -> None:
    """The job ran once per ``up``, its dependent waited each time for the job's new run,
    and restart counts and last exits of the first run are not shown in the second."""
    port = free_port()
    _fleet(project, port, crasher=True)
    (project.root / "crash").touch()
    project.corral("up", "-d")
    app_up = _app_started(project, 1)
    first = project.wait_for(lambda r: app_up(r) and r["crasher.1"]["restarts"] >= 1,
                             what="the app up and the crasher restarted")
    assert first["bucket.1"]["state"] == "exited" and first["bucket.1"]["exit_code"] == 0
    assert _lines(project.root / "job-runs.txt") == ["ran"]
    assert _lines(project.root / "app-starts.txt") == ["made after 1 job runs"]

    assert "stopped" in project.corral("down").stdout
    (project.root / "crash").unlink()
    project.corral("up", "-d")
    project.wait_for(_app_started(project, 2), what="the app up again")
    assert _lines(project.root / "job-runs.txt") == ["ran", "ran"]
    # the dependent of the second run started after the job's second run, not on the
    # first one's result
    assert _lines(project.root / "app-starts.txt") == [
        "made after 1 job runs", "made after 2 job runs"]
    rows = project.wait_for(lambda r: r["crasher.1"]["state"] == "running",
                            what="the crasher running")
    for name in ("store.1", "bucket.1", "app.1", "crasher.1"):
        assert rows[name]["restarts"] == 0, rows[name]
    assert rows["crasher.1"]["exit_code"] is None, "the last exit of the first run is gone"
    assert rows["crasher.1"]["reason"] == ""


def test_a_fatal_dependency_after_down_keeps_its_dependents_down(project: Project) -> None:
    """The store cannot start (its port is taken): the job's success of the run before
    ``down`` does not let the app start; both say why."""
    port = free_port()
    _fleet(project, port)
    project.corral("up", "-d")
    project.wait_for(_app_started(project, 1), what="the first run up")
    project.corral("down")
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        up = project.corral("up", "-d", check=False)
        assert up.returncode == 1, up.stdout + up.stderr
        rows = project.ps()
    assert rows["store.1"]["state"] == "fatal"
    assert "already in use" in rows["store.1"]["reason"], rows["store.1"]
    assert rows["bucket.1"]["state"] == "fatal"
    assert rows["bucket.1"]["reason"].startswith("dependency store failed"), rows["bucket.1"]
    assert rows["app.1"]["state"] == "fatal"
    assert rows["app.1"]["pid"] is None
    assert _lines(project.root / "job-runs.txt") == ["ran"], "the job did not run again"
    assert _lines(project.root / "app-starts.txt") == ["made after 1 job runs"]


def test_restart_true_reruns_the_job_between_then_restarts_the_dependent(
        project: Project) -> None:
    """The store restarts (on request, then by a crash): the bucket job runs again once the
    store is healthy, and the app restarts after it, finding its bucket each time."""
    port = free_port()
    _fleet(project, port, restart=True)
    project.corral("up", "-d")
    before = project.wait_for(_app_started(project, 1), what="the app up")
    starts = project.root / "app-starts.txt"

    project.corral("restart", "store")
    after = project.wait_for(_app_started(project, 2), what="the app restarted after the store")
    assert after["app.1"]["pid"] != before["app.1"]["pid"]
    assert _lines(project.root / "job-runs.txt") == ["ran", "ran"]
    assert _lines(starts) == ["made after 1 job runs", "made after 2 job runs"]

    os.kill(after["store.1"]["pid"], signal.SIGKILL)  # a crash: restarted by its policy
    again = project.wait_for(_app_started(project, 3),
                             what="the app restarted after the store's crash")
    assert again["store.1"]["restarts"] == 2
    assert _lines(project.root / "job-runs.txt") == ["ran", "ran", "ran"]
    assert _lines(starts)[-1] == "made after 3 job runs"
    assert again["app.1"]["restarts"] == 2, "the app never crashed for want of its bucket"

    # a reconcile that recreates the store (its spec changed) is a new run of it too
    text = project.manifest.read_text()
    project.manifest.write_text(text.replace(
        "    class: service\n", "    class: service\n    env: {STORE_EDITION: '2'}\n", 1))
    assert "store.1" in project.corral("up", "-d").stdout
    project.wait_for(_app_started(project, 4), what="the app restarted after the reconcile")
    assert _lines(project.root / "job-runs.txt") == ["ran"] * 4
    assert _lines(starts)[-1] == "made after 4 job runs"


# healthy (200 on /health) about 2 s after it starts; 503 before
WARMING = """\
import http.server, sys, time
began = time.monotonic()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if time.monotonic() - began > 2 else 503)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

# accepts connections about 2 s after it starts
SLOW_TCP = """\
import socket, sys, time
time.sleep(2)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
while True:
    s.accept()[0].close()
"""


def _waiting_fleet(project: Project, *, failing: int = 4) -> None:
    http_port, tcp_port = free_port(), free_port()
    project.file("warming.py", WARMING)
    project.file("slow_tcp.py", SLOW_TCP)
    project.write(f"""
        name: ready
        agents:
          web:
            class: service
            command: python3 warming.py {http_port}
            readiness: {{http: {{port: {http_port}, path: /health}}, period: 0.2s}}
          tcp:
            class: service
            command: python3 slow_tcp.py {tcp_port}
            readiness: {{tcp: {tcp_port}, period: 0.2s}}
          plain: {{command: sleep 300}}
          job:
            class: compute
            command: python3 -c "print('done')"
          failing:
            class: compute
            command: sh -c 'exit {failing}'
            restart: "no"
            depends_on: [job]
    """)


def test_start_and_restart_wait_return_once_the_instance_is_healthy(
        project: Project) -> None:
    _waiting_fleet(project)
    project.corral("up", "-d", check=False)
    project.wait_for(lambda r: r["web.1"]["health"] == "healthy"
                     and r["tcp.1"]["health"] == "healthy", what="the fleet healthy")
    project.corral("stop", "web", "tcp")

    out = project.corral("start", "--wait", "web").stdout
    rows = project.ps()
    assert rows["web.1"]["state"] == "running" and rows["web.1"]["health"] == "healthy", out
    assert out.startswith("web.1: running pid "), out

    out = project.corral("restart", "--wait", "web").stdout
    after = project.ps()
    assert after["web.1"]["health"] == "healthy"
    assert after["web.1"]["pid"] != rows["web.1"]["pid"], out

    project.corral("start", "--wait", "tcp")
    assert project.ps()["tcp.1"]["health"] == "healthy"

    # a one-shot is ready once completed, with 0; one that exits otherwise is a failure
    project.corral("start", "--wait", "job")
    assert project.ps()["job.1"]["state"] == "exited"
    failed = project.corral("start", "--wait", "failing", check=False)
    assert failed.returncode == 1, failed.stdout
    assert failed.stdout.startswith("failing.1: exited ("), failed.stdout


def test_up_wait_returns_with_the_whole_fleet_ready(project: Project) -> None:
    _waiting_fleet(project, failing=0)
    up = project.corral("up", "--wait", "--wait-timeout", "60")
    rows = project.ps()
    assert rows["web.1"]["health"] == "healthy" and rows["tcp.1"]["health"] == "healthy", up
    assert rows["plain.1"]["state"] == "running"
    assert rows["job.1"]["state"] == "exited" and rows["job.1"]["exit_code"] == 0
    assert "web.1: running pid" in up.stdout

    project.corral("down")
    _waiting_fleet(project)
    failed = project.corral("up", "--wait", check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "failing.1: exited (" in failed.stdout
    assert project.ps()["web.1"]["health"] == "healthy", "the rest was still waited for"

    bad = project.corral("up", "--wait", "--wait-timeout", "-1", check=False)
    assert bad.returncode == 2 and "--wait-timeout" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr


QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


def test_quickstart_reruns_seed_after_down_and_monitor_follows_the_cache(
        tmp_path: Path) -> None:
    """The quickstart as shipped: ``seed`` runs again at each ``up`` after ``down``, and when
    the cache restarts (its counters are in memory) seed re-runs before ``monitor``, which
    has ``restart: true``, restarts and finds the counters seeded."""
    import shutil

    root = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, root)
    project = Project(root)
    env = {"QUICKSTART_PORT": str(free_port()), "QUICKSTART_METRICS_PORT": str(free_port())}

    def said(agent: str, text: str) -> int:
        return sum(text in r["message"] for r in project.records(agent))

    def up(times: int) -> Rows:
        project.corral("up", "-d", env=env, timeout=300)
        return project.wait_for(
            lambda r: r["monitor.1"]["state"] == "running"
            and said("monitor", "the cache is seeded") == times
            and all(r[w]["state"] == "running" for w in ("worker.1", "worker.2")),
            timeout=240, what=f"the quickstart up ({times})")

    try:
        before = up(1)
        assert said("seed", "seeded counters") == 1
        project.corral("restart", "cache", env=env)
        after = project.wait_for(
            lambda r: r["monitor.1"]["state"] == "running"
            and said("monitor", "the cache is seeded") == 2, timeout=60,
            what="monitor restarted after the cache")
        assert after["monitor.1"]["pid"] != before["monitor.1"]["pid"]
        assert said("seed", "seeded counters") == 2, "seed re-ran before monitor restarted"
        assert said("monitor", "not seeded") == 0

        project.corral("down", env=env)
        rows = up(3)
        assert said("seed", "seeded counters") == 3, "seed ran again after down"
        assert rows["seed.1"]["restarts"] == 0 and rows["monitor.1"]["restarts"] == 0
    finally:
        tear_down(project, root)
