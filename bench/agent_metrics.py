"""What corral's /metrics costs with the agents' own metrics: N instances (default 500) each
serving S samples (default 50) on a port of its own, scraped and re-exposed as the daemon does
at each scrape (``metrics.scrape.Scraper`` over real TCP, then ``metrics.Metrics.render``).
The endpoints are one asyncio process with N listening sockets (N processes would measure the
machine, not corral); the daemon's side runs in this process. Each value is over --runs rounds,
each a fresh round (the scrape cache never answers).

    python bench/agent_metrics.py [--n 500] [--samples 50] [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(SRC))


def exposition(samples: int, salt: int) -> bytes:
    lines = ["# HELP app_requests_total Requests served.", "# TYPE app_requests_total counter"]
    lines += [f'app_requests_total{{path="/api/v1/items/{i}",code="200",method="GET"}} '
              f"{salt * 1000 + i}" for i in range(samples)]
    return ("\n".join(lines) + "\n").encode()


async def serve(n: int, samples: int) -> None:
    body = exposition(samples, 1)
    reply = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:  # a connection that sends nothing (another process probing ports) is let go
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    servers = [await asyncio.start_server(handle, "127.0.0.1", 0, backlog=64) for _ in range(n)]
    print(json.dumps([s.sockets[0].getsockname()[1] for s in servers]), flush=True)
    await asyncio.Event().wait()


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    return f"median {statistics.median(values) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms"


def measure(ports: list[int], runs: int) -> dict[str, str]:
    """``waiting``: a scrape of corral that waits for a round of the agents (the first one, or
    after ``STALE``) and renders; ``answer``: one served from the last round while the next
    runs (the steady state under Prometheus); ``changed``: the scrape after an instance
    stopped (the targets changed), with the daemon's budget (``CHANGED_WAIT``); ``first``: the
    daemon's first scrape of corral after the instances started, with its warm-up (``warm``
    at their start, done before the scrape came) and its budget; ``cold``: a first scrape
    with the budget but no warm-up (it answers without the agents); ``round``: a round alone;
    ``own``: corral's own metrics of the same instances, without ``metrics:``, for
    comparison."""
    from corral.metrics import Metrics
    from corral.metrics.scrape import CHANGED_WAIT, Scraper, Target

    targets = [Target("app", f"app.{i}", "127.0.0.1", p, "/metrics")
               for i, p in enumerate(ports, 1)]
    rows = [{"agent": "app", "name": t.instance, "state": "running", "restarts": 0,
             "exit_code": None, "health": None, "oom_killed": False, "uptime": 10.0}
            for t in targets]
    metrics, logs = Metrics(), {"app": [0, 10, 0, 1, 0]}
    times: dict[str, list[float]] = {"waiting": [], "answer": [], "changed": [], "round": [],
                                     "own": [], "first": [], "cold": []}
    facts: dict[str, str] = {}

    async def once() -> None:
        scraper = Scraper()
        t0 = time.perf_counter()
        first = await scraper.round(targets)
        t1 = time.perf_counter()
        body = metrics.render(rows, {}, logs, first)
        t2 = time.perf_counter()
        await asyncio.sleep(0.6)  # past MAX_AGE: the next scrape of corral starts a round
        t3 = time.perf_counter()
        stale = await scraper.round(targets)
        metrics.render(rows, {}, logs, stale)
        t4 = time.perf_counter()
        assert stale is first
        await scraper._next  # let the refresh finish before the next run
        t7 = time.perf_counter()
        changed = await scraper.round(targets[1:], CHANGED_WAIT)  # app.1 stopped
        metrics.render(rows[1:], {}, logs, changed)
        times["changed"].append(time.perf_counter() - t7)
        await scraper._next
        warmed = Scraper()
        warmed.warm(targets)  # the daemon, 0.2 s after the instances started
        await warmed._next
        t8 = time.perf_counter()
        found = await warmed.round(targets, CHANGED_WAIT)
        metrics.render(rows, {}, logs, found)
        times["first"].append(time.perf_counter() - t8)
        assert found.results, "the warm-up's round answers"
        cold = Scraper()
        t9 = time.perf_counter()
        metrics.render(rows, {}, logs, await cold.round(targets, CHANGED_WAIT))
        times["cold"].append(time.perf_counter() - t9)
        await cold._next
        t5 = time.perf_counter()
        metrics.render(rows, {}, logs, None)
        t6 = time.perf_counter()
        times["waiting"].append(t2 - t0)
        times["round"].append(t1 - t0)
        times["answer"].append(t4 - t3)
        times["own"].append(t6 - t5)
        facts["body"] = f"{len(body) / 1e6:.1f} MB"
        facts["up"] = str(sum(r.up for r in first.results))

    for _ in range(runs):
        asyncio.run(once())
    return {**{k: _ms(v) for k, v in times.items()}, **facts}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.n, args.samples))
        return 0
    child = subprocess.Popen([sys.executable, __file__, "--serve", "--n", str(args.n),
                              "--samples", str(args.samples)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None
        ports = json.loads(child.stdout.readline())
        result = measure(ports, args.runs)
    finally:
        os.kill(child.pid, signal.SIGTERM)
        child.wait(timeout=10)
    print(f"/metrics with {args.n} instances x {args.samples} samples each ({result['body']}, "
          f"{result['up']} instances up), {args.runs} runs:")
    for key in ("answer", "changed", "first", "cold", "waiting", "round", "own"):
        print(f"  {key:8} {result[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
