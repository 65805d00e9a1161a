"""A real Prometheus on 127.0.0.1 for the observability tests: Debian's ``prometheus``, on a
free port with a temp config and storage dir, scraping the targets it is given every second
(``honor_labels: true``, as docs/observability.md tells users to scrape corral) and evaluating
the rule files it is given as often. Stopped by
its PID at the end. ``Prometheus.query`` asks its HTTP API (``/api/v1/query``)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

INSTALL = "scripts/install.sh --test installs it (apt-get install prometheus)"
Series = list[dict[str, Any]]  # the API's result: [{"metric": {...}, "value": [t, "v"]}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Prometheus:
    url: str
    log: Path

    def query(self, promql: str) -> Series:
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=10) as r:
            answer = json.load(r)
        assert answer["status"] == "success", answer
        result: Series = answer["data"]["result"]
        return result

    def wait_for(self, promql: str, ok: Callable[[Series], bool], *, timeout: float = 60,
                 what: str = "") -> Series:
        deadline = time.monotonic() + timeout
        found: Series = []
        while time.monotonic() < deadline:
            found = self.query(promql)
            if ok(found):
                return found
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what or promql}; last answer: {found}\n"
                             f"prometheus log tail:\n{self.log.read_text()[-2000:]}")


@contextlib.contextmanager
def prometheus(root: Path, targets: list[str], job: str = "corral",
               rules: list[Path] | None = None) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(f"prometheus is not installed: {INSTALL}")
    root.mkdir(parents=True, exist_ok=True)
    config = root / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": job, "honor_labels": True, "scrape_timeout": "1s",
                            "static_configs": [{"targets": targets}]}],
        "rule_files": [str(r) for r in rules or []],
    }))
    port = free_port()
    log = root / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                if r.status == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"prometheus did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield Prometheus(url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
