"""Screenshots of each dashboard view for docs/dashboard.md, taken from a real fleet (the real
CLI and daemon in a temp dir) in Debian's Chromium, headless, driven by Playwright.

    PYTHONPATH=src .venv/bin/python scripts/dashboard_screenshots.py [--out docs/img]

Writes dashboard-fleet.png, dashboard-graph.png, dashboard-instance.png, dashboard-logs.png.
The fleet is stopped (``corral down``, then its daemon by PID) at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORRAL = [sys.executable, "-m", "corral.cli.main"]

FLEET = r"""
name: shop
agents:
  db:
    description: the orders' store
    command: sh -c 'while true; do echo "checkpoint done"; sleep 2; done'
    liveness: {exec: "true", period: 1s}
  cache:
    command: >-
      sh -c 'while true; do
      echo "{\"level\":\"debug\",\"message\":\"evicted 3 keys\"}"; sleep 3; done'
  api:
    command: >-
      sh -c 'i=0; while true; do i=$$((i+1));
      echo "{\"level\":\"info\",\"message\":\"GET /orders/$$i 200 in 12ms\"}";
      [ $$((i % 4)) = 0 ] && echo "{\"level\":\"warn\",\"message\":\"slow query on orders ($$i)\"}";
      [ $$((i % 9)) = 0 ]
      && echo "{\"level\":\"error\",\"message\":\"payment gateway timeout, order $$i\"}";
      sleep 0.4; done'
    depends_on: {db: {condition: healthy}, cache: {condition: started}}
    replicas: 3
  worker:
    command: >-
      sh -c 'while true; do echo "job done";
      head -c 2000000 /dev/urandom | gzip > /dev/null; sleep 1; done'
    depends_on: [api]
    replicas: 2
  mailer:
    command: >-
      sh -c 'echo "{\"level\":\"error\",\"message\":\"SMTP refused: 421\"}"; sleep 2; exit 3'
    depends_on: [api]
    restart: {policy: always, backoff: {initial: 1s}}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = ap.parse_args()
    from tests.support.browser import chromium, missing

    if missing():
        print(f"dashboard_screenshots: {missing()}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="corral-shots-"))
    (root / "corral.yaml").write_text(FLEET)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def corral(*argv: str) -> str:
        return subprocess.run(
            [*CORRAL, "-f", str(root / "corral.yaml"), *argv],
            env=env,
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    corral("up", "-d")
    daemon = int((root / ".corral" / "daemon.pid").read_text())
    try:
        time.sleep(2)
        corral("restart", "api.2")
        link = re.search(r"http://\S+#code=\S+", corral("dashboard"))
        assert link, "no link"
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1360, "height": 760}, device_scale_factor=1)
            page.set_default_timeout(30_000)
            page.goto(link[0])
            page.wait_for_selector("#link[data-live='yes']")
            time.sleep(14)  # the sparklines fill, the mailer crashes a few times
            base = page.url.split("#")[0]
            page.screenshot(path=str(args.out / "dashboard-fleet.png"))
            page.goto(base + "#graph")
            page.wait_for_selector("#graph .node[data-agent='mailer']")
            page.screenshot(path=str(args.out / "dashboard-graph.png"))
            page.goto(base + "#instance/api.2")
            page.wait_for_selector("figure.spark-cpu polyline")
            page.screenshot(path=str(args.out / "dashboard-instance.png"))
            page.goto(base + "#logs")
            page.select_option("#logs-level", "warn")
            page.select_option("#logs-agent", "api")
            page.click("#logs-search")
            page.wait_for_selector("#logs-table tr[data-level='error']")
            time.sleep(1)
            page.screenshot(path=str(args.out / "dashboard-logs.png"))
    finally:
        subprocess.run(
            [*CORRAL, "-f", str(root / "corral.yaml"), "down"],
            env=env,
            cwd=root,
            capture_output=True,
            timeout=120,
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGKILL)
    for name in ("fleet", "graph", "instance", "logs"):
        print(args.out / f"dashboard-{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
