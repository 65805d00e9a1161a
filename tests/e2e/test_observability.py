"""The agents' own metrics and the log counters, end to end: a fleet run by the real CLI and
daemon, scraped by a real Prometheus (Debian's) through corral's one metrics port, and
queried through Prometheus' HTTP API."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Project
from tests.support.prometheus import Series, free_port, prometheus

pytestmark = pytest.mark.e2e

# An agent serving its own metrics: a counter of the scrapes it answered, and a log line at
# level error every 0.2 s (the log counters' input).
APP = """\
import http.server, sys, threading, time

port, count = int(sys.argv[1]), 0


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
        print("ERROR something went wrong", flush=True)
        print("handled a request", flush=True)
        time.sleep(0.2)


threading.Thread(target=chatter, daemon=True).start()
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def value(found: Series) -> float:
    return float(found[0]["value"][1]) if found else -1.0


def test_prometheus_sees_agents_metrics_scrape_failures_and_log_counts(
        project: Project, tmp_path: Path) -> None:
    corral_port, app_port, dead_port = free_port(), free_port(), free_port()
    project.file("app.py", APP)
    project.write(f"""
        name: obs
        metrics: {{port: {corral_port}}}
        agents:
          app:
            command: [python3, app.py, "{app_port}"]
            metrics: {{port: {app_port}, path: /custom}}
          mute:
            command: sleep 600
            metrics: {{port: {dead_port}}}
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: all(x["state"] == "running" for x in r.values()) and len(r) == 2,
                     what="both running")
    with prometheus(tmp_path / "prom", [f"127.0.0.1:{corral_port}"]) as prom:
        found = prom.wait_for('app_scrapes_total{agent="app",instance="app.1"}',
                              lambda s: value(s) >= 1, what="the agent's own sample")
        assert found[0]["metric"]["path"] == "/custom"  # scraped at its path
        assert found[0]["metric"]["job"] == "corral"  # one target for the whole fleet
        up = prom.wait_for("corral_instance_scrape_up", lambda s: len(s) == 2)
        assert {s["metric"]["instance"]: s["value"][1] for s in up} == {"app.1": "1",
                                                                         "mute.1": "0"}
        errors = 'corral_log_lines_total{agent="app",level="error"}'
        first = value(prom.wait_for(errors, lambda s: value(s) > 0))
        prom.wait_for(errors, lambda s: value(s) > first, what="error lines counted")
        rate = prom.wait_for(f"rate({errors}[5s])", lambda s: value(s) > 0)
        assert 1 < value(rate) < 20  # ~5 error lines a second
        info = prom.query('corral_log_lines_total{agent="app",level="info"}')
        assert value(info) > 0
        assert prom.query('up{job="corral"}')[0]["value"][1] == "1"
