"""How soon the web dashboard shows a state change (issue 14's bar: within 200 ms of the event),
side by side with the two other ways a user sees one: ``corral events -f`` in a terminal (the
same event stream, printed), and ``watch -n 1 corral ps`` (a status poll each second).

A real fleet (the real CLI and daemon, N idle instances) in a temp dir; the dashboard open in
Debian's Chromium, headless, driven by Playwright. Each round restarts one instance over the
daemon's socket (not from the page) and waits until all three have seen its new run. The
dashboard's figure is the page's own timing log (``window.corral.timings``): for each state
event, the daemon's clock when it published it (``timestamp``) to the browser's clock at the
animation frame that draws the table with it; the same host, one clock. ``events -f``: when its
line is read here, against the event's ``time``. The poll: when the first status after the
event shows the new pid. Also the daemon's RSS before the dashboard was asked for and with the
page open.

    python bench/dashboard.py [--n 10] [--rounds 30]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
CORRAL = [sys.executable, "-m", "corral.cli.main"]
BAR_MS = 200.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stats(values: list[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    return (
        f"median {statistics.median(values):.1f} ms, p90 {p90:.1f} ms, "
        f"max {ordered[-1]:.1f} ms (n={len(values)})"
    )


class Follower(threading.Thread):
    """``corral events -f --json``: each line's arrival time, by (instance, state, pid)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.proc = subprocess.Popen(
            [*CORRAL, "-f", str(root / "corral.yaml"), "events", "-f", "--json", "--tail", "0"],
            stdout=subprocess.PIPE,
            env=env,
            cwd=root,
        )
        self.seen: list[tuple[float, dict[str, Any]]] = []

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.seen.append((time.time(), json.loads(line)))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Poller(threading.Thread):
    """``watch -n 1 corral ps``: the status each second, and when each pid was first seen."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(daemon=True)
        from corral.api.client import Client

        self.client = Client(socket_path)
        self.first_seen: dict[tuple[str, int], float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            at = time.time()
            for row in self.client.instances():
                if row["pid"] is not None and row["state"] == "running":
                    self.first_seen.setdefault((row["name"], row["pid"]), at)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10, help="instances in the fleet")
    ap.add_argument("--rounds", type=int, default=30, help="restarts measured")
    args = ap.parse_args()
    from tests.support.browser import chromium, missing

    if missing():
        print(f"bench/dashboard.py: {missing()}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="corral-bench-dashboard-"))
    (root / "corral.yaml").write_text(
        "name: benchboard\nagents:\n"
        f"  svc: {{command: sleep 3600, replicas: {args.n}, restart: {{policy: always}}}}\n"
        "  front: {command: sleep 3600, depends_on: [svc]}\n"
    )
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

    corral("up", "-d", "--wait")
    daemon = int((root / ".corral" / "daemon.pid").read_text())
    follower: Follower | None = None
    poller: Poller | None = None
    try:
        time.sleep(3)
        rss_off = rss_mb(daemon)
        link = re.search(r"http://\S+#code=\S+", corral("dashboard"))
        assert link, "no link"
        follower, poller = Follower(root, env), Poller(str(root / ".corral" / "corral.sock"))
        follower.start()
        poller.start()
        from corral.api.client import Client

        client = Client(str(root / ".corral" / "corral.sock"))
        page_ms: list[float] = []
        wire_ms: list[float] = []  # the part of page_ms before the page had the event
        all_ms: list[float] = []
        follow_ms: list[float] = []
        poll_ms: list[float] = []
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(30_000)
            page.goto(link[0])
            page.wait_for_selector("#link[data-live='yes']")
            time.sleep(3)
            rss_on = rss_mb(daemon)
            jitter = random.Random(14)  # a restart at any point of the poll's second
            for k in range(args.rounds):
                name = f"svc.{k % args.n + 1}"
                time.sleep(jitter.uniform(0.0, 1.0))
                old = {r["name"]: r for r in client.instances()}[name]["pid"]
                client.restart([name])
                got = page.wait_for_function(
                    "([name, old]) => window.corral.timings.find(t => t.instance === name"
                    " && t.state === 'running' && t.pid !== null && t.pid !== old)",
                    arg=[name, old],
                ).json_value()
                page_ms.append(got["shown_ms"] - got["event_ms"])
                wire_ms.append(got["received_ms"] - got["event_ms"])
                event_at = got["event_ms"] / 1000
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    lines = [
                        (at, e)
                        for at, e in follower.seen
                        if e["instance"] == name
                        and e["state"] == "running"
                        and e["time"] >= event_at - 1
                    ]
                    if lines and (name, got["pid"]) in poller.first_seen:
                        break
                    time.sleep(0.05)
                at, event = lines[-1]
                follow_ms.append((at - event["time"]) * 1000)
                poll_ms.append((poller.first_seen[(name, got["pid"])] - event_at) * 1000)
            all_ms = [t["shown_ms"] - t["event_ms"] for t in page.evaluate("window.corral.timings")]
    finally:
        if poller is not None:
            poller.done.set()
        if follower is not None:
            follower.stop()
        subprocess.run(
            [*CORRAL, "-f", str(root / "corral.yaml"), "down"],
            env=env,
            cwd=root,
            capture_output=True,
            timeout=120,
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGKILL)
    page_median = statistics.median(page_ms)
    print(f"fleet: {args.n + 1} instances; {args.rounds} restarts, one instance each")
    print(f"dashboard (event -> frame drawn), the restart's running event: {stats(page_ms)}")
    print(f"  of which daemon -> page (the event parsed by the page's stream):  {stats(wire_ms)}")
    print(f"dashboard, every state event shown in the run:                  {stats(all_ms)}")
    print(f"corral events -f (event -> line read):                          {stats(follow_ms)}")
    print(f"watch -n 1 corral ps (event -> first poll showing it):          {stats(poll_ms)}")
    print(
        f"ratios of medians to the dashboard's: events -f "
        f"{statistics.median(follow_ms) / page_median:.2f}x, "
        f"1 s poll {statistics.median(poll_ms) / page_median:.2f}x"
    )
    worst = max(page_ms)
    print(
        f"bar: within {BAR_MS:.0f} ms: {'met' if worst <= BAR_MS else 'missed'} "
        f"(worst {worst:.1f} ms)"
    )
    print(
        f"daemon RSS: {rss_off:.1f} MB before the dashboard, {rss_on:.1f} MB with it serving "
        f"an open page (+{rss_on - rss_off:.1f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
