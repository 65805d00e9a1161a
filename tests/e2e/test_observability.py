"""The agents' own metrics and the log counters, end to end: a fleet run by the real CLI and
daemon, scraped by a real Prometheus (Debian's) through corral's one metrics port, and
queried through Prometheus' HTTP API."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Project
from tests.support.prometheus import Series, free_port, prometheus

pytestmark = pytest.mark.e2e

# An agent serving its own metrics: a counter of the scrapes it answered, and 10 log lines at
# level error every 0.2 s (the log counters' input: 50 a second, past the error-rate alert's
# threshold of 1 at once, though its rate is over 5 minutes). Instance N listens on PORT + N - 1.
APP = """\
import http.server, os, sys, threading, time

port, count = int(sys.argv[1]) + int(os.environ["CORRAL_INSTANCE_INDEX"]) - 1, 0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global count
        count += 1
        body = ("# HELP app_scrapes_total Scrapes answered.\\n"
                "# TYPE app_scrapes_total counter\\n"
                f'app_scrapes_total{{path="{self.path}"}} {count}\\n').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def chatter():
    while True:
        print("ERROR something went wrong\\n" * 10 + "handled a request", flush=True)
        time.sleep(0.2)


threading.Thread(target=chatter, daemon=True).start()
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

# An agent whose exposition tries to pass for corral, to break its exposition (a label twice,
# a bad line, a family typed twice) and to flood it.
HOSTILE = """\
import http.server, sys

BODY = (
    'corral_instance_up{agent="app",instance="app.1"} 0\\n'
    '# TYPE corral_instance_state gauge\\n'
    'corral_instance_state{agent="app",instance="app.1",state="fatal"} 1\\n'
    'evil_twice{a="1",a="2"} 1\\n'
    'evil_bad{ 1\\n'
    '# TYPE evil_kind counter\\n# TYPE evil_kind gauge\\nevil_kind_total 1\\n'
    'evil_ok{agent="app",instance="app.1"} 7\\n'
).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def value(found: Series) -> float:
    return value1(found[0]) if found else -1.0


def value1(series: dict[str, Any]) -> float:
    return float(series["value"][1])


def free_pair() -> int:
    """A port P with P + 1 free too (two replicas listen on P and P + 1)."""
    for _ in range(100):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free ports in a row")


def test_prometheus_sees_agents_metrics_scrape_failures_and_log_counts(
        project: Project, tmp_path: Path) -> None:
    corral_port, dead_port, evil_port = free_port(), free_port(), free_port()
    app_port = free_pair()
    project.file("app.py", APP)
    project.file("evil.py", HOSTILE)
    project.write(f"""
        name: obs
        metrics: {{port: {corral_port}}}
        agents:
          app:
            command: [python3, app.py, "{app_port}"]
            replicas: 2
            metrics: {{port: {app_port}, path: /custom}}
          mute:
            command: sleep 600
            metrics: {{port: {dead_port}}}
          evil:
            command: [python3, evil.py, "{evil_port}"]
            metrics: {{port: {evil_port}}}
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: all(x["state"] == "running" for x in r.values()) and len(r) == 4,
                     what="all running")
    exported = tmp_path / "exported"
    project.corral("observability", "export", "--out", str(exported))
    with prometheus(tmp_path / "prom", [f"127.0.0.1:{corral_port}"],
                    rules=[exported / "corral-alerts.yml"]) as prom:
        found = prom.wait_for('app_scrapes_total{agent="app"}',
                              lambda s: len(s) == 2 and min(map(value1, s)) >= 1,
                              what="both instances' own samples")
        assert sorted(s["metric"]["instance"] for s in found) == ["app.1", "app.2"]
        assert found[0]["metric"]["path"] == "/custom"  # scraped at its path
        assert found[0]["metric"]["job"] == "corral"  # one target for the whole fleet
        up = prom.wait_for("corral_instance_scrape_up", lambda s: len(s) == 4)
        assert {s["metric"]["instance"]: s["value"][1] for s in up} == {
            "app.1": "1", "app.2": "1", "mute.1": "0", "evil.1": "1"}
        # the hostile agent: corral's target stays up, nothing passes for corral's own series
        assert prom.query('up{job="corral"}')[0]["value"][1] == "1"
        spoofed = prom.query('corral_instance_up{instance="app.1"}')
        assert [s["value"][1] for s in spoofed] == ["1"]  # corral's only
        assert prom.query('corral_instance_state{state="fatal",instance="app.1"}')[0][
            "value"][1] == "0"
        ok = prom.query('evil_ok{agent="evil"}')
        assert ok[0]["metric"]["exported_agent"] == "app" and ok[0]["metric"][
            "instance"] == "evil.1"
        assert prom.query('{__name__=~"evil_twice|evil_bad"}') == []
        assert value(prom.query("evil_kind_total")) == 1  # its first TYPE line counts
        dropped = prom.query('corral_instance_scrape_samples_dropped{instance="evil.1"}')
        assert value(dropped) == 4  # corral's two names, the label twice, the bad line
        # the exported rules over the real exposition: a failing scrape and the error rate
        # are pending (their for: is minutes), a running daemon is not down
        pending = prom.wait_for('ALERTS{alertstate="pending"}', lambda s: {
            (a["metric"]["alertname"], a["metric"].get("instance", a["metric"].get("agent")))
            for a in s} >= {("CorralAgentScrapeFailing", "mute.1"),
                            ("CorralLogErrorRate", "app")}, what="the alerts pending")
        names = {a["metric"]["alertname"] for a in pending}
        assert "CorralDaemonDown" not in names and "CorralInstanceFatal" not in names
        errors = 'corral_log_lines_total{agent="app",level="error"}'
        first = value(prom.wait_for(errors, lambda s: value(s) > 0))
        prom.wait_for(errors, lambda s: value(s) > first, what="error lines counted")
        rate = prom.wait_for(f"rate({errors}[5s])", lambda s: value(s) > 0)
        assert 40 < value(rate) < 200  # two instances, ~50 error lines a second each
        info = prom.query('corral_log_lines_total{agent="app",level="info"}')
        assert value(info) > 0
        assert prom.query('up{job="corral"}')[0]["value"][1] == "1"


SERVE = """\
import http.server, sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"inside_total 42\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
"""


def test_a_container_agent_is_scraped_at_the_port_publishing_it(
        project: Project, podman_engine: Any) -> None:
    """The agent listens on 8000 inside its container; corral scrapes the host port that
    publishes it. corral's own /metrics is read directly (no Prometheus needed here)."""
    from tests.support.engines import IMAGE

    corral_port, published = free_port(), free_port()
    project.write(f"""
        name: obsbox
        metrics: {{port: {corral_port}}}
        agents:
          box:
            isolation: container
            container: {{engine: podman, image: "{IMAGE}", ports: ["{published}:8000"]}}
            command: [python3, -c, {json.dumps(SERVE)}, "8000"]
            metrics: {{port: 8000}}
    """)
    env = {"CORRAL_CONTAINER_ENGINE": "podman"}
    try:
        project.corral("up", "-d", env=env, timeout=300)
        project.wait_for(lambda r: r["box.1"]["state"] == "running", timeout=120,
                         what="box running")
        deadline, body = time.monotonic() + 30, ""
        while 'corral_instance_scrape_up{agent="box",instance="box.1"} 1.0' not in body:
            assert time.monotonic() < deadline, body
            time.sleep(0.5)
            with urllib.request.urlopen(f"http://127.0.0.1:{corral_port}/metrics",
                                        timeout=10) as r:
                body = r.read().decode()
        assert 'inside_total{agent="box",instance="box.1"} 42' in body
    finally:
        project.corral("down", check=False, env=env)


def test_the_first_scrape_of_corral_finds_the_agents_round_made_at_their_start(
        project: Project) -> None:
    """The daemon starts a round of the agents' scrapes when instances with ``metrics:``
    run, so corral's very first /metrics already has them (their ``scrape_up`` is there, 1
    or 0 as the agent was listening then): it neither waits out the agents' answers nor
    leaves them out. The agent takes 0.3 s to answer, past the 50 ms a scrape of corral
    waits, so without the warm-up the first scrape would have no round of it."""
    slow = SERVE.replace("    def do_GET(self):\n",
                         "    def do_GET(self):\n        __import__('time').sleep(0.3)\n")
    assert slow != SERVE
    corral_port, agent_port = free_port(), free_port()
    project.write(f"""
        name: obswarm
        metrics: {{port: {corral_port}}}
        agents:
          m:
            command: [python3, -c, {json.dumps(slow)}, "{agent_port}"]
            metrics: {{port: {agent_port}}}
    """)
    try:
        project.corral("up", "-d")
        project.wait_for(lambda r: r["m.1"]["state"] == "running", timeout=60)
        time.sleep(1.5)  # past the warm-up's delay and its one scrape
        with urllib.request.urlopen(f"http://127.0.0.1:{corral_port}/metrics",
                                    timeout=10) as r:
            first = r.read().decode()
        assert 'corral_instance_scrape_up{agent="m",instance="m.1"}' in first, first
        deadline, body = time.monotonic() + 30, first
        while 'inside_total{agent="m",instance="m.1"} 42' not in body:
            assert time.monotonic() < deadline, body
            time.sleep(0.5)
            with urllib.request.urlopen(f"http://127.0.0.1:{corral_port}/metrics",
                                        timeout=10) as r:
                body = r.read().decode()
    finally:
        project.corral("down", check=False)
