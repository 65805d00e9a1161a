"""What containment costs at start: N agents as plain processes, with cgroup limits, and in
the bubblewrap sandbox, each until `corral ps` shows all N running; the same N started bare
(a Popen loop, with and without bwrap) for scale. Runs are interleaved so the machine's noise
falls on every variant alike; each value is the median of --runs.

    python bench/containment.py [--n 100] [--runs 3] [--out docs/benchmarks.md]

With --out, the report replaces the block between the containment markers in that file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, children, emit_block, idle_cmd, make_tag, sweep

CORRAL = REPO / ".venv" / "bin" / "corral"
BEGIN, END = "<!-- containment:begin -->", "<!-- containment:end -->"
LIMITS = {"cpus": 0.5, "memory": "64M", "pids": 64}
VARIANTS = {
    "plain": {},
    "limits": {"resources": LIMITS},
    "sandbox": {"isolation": "sandbox", "network": "none"},
    "sandbox+limits": {"isolation": "sandbox", "network": "none", "resources": LIMITS},
}


def corral_up(n: int, tag: str, extra: dict[str, object]) -> float:
    """Seconds from `corral up -d` until `corral ps` shows n running."""
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as d:
        manifest = Path(d) / "corral.yaml"
        agent = {"command": idle_cmd(tag), "replicas": n, **extra}
        manifest.write_text(json.dumps({"name": "contain", "agents": {"idle": agent}}))
        base = [str(CORRAL), "-f", str(manifest)]
        t0 = time.monotonic()
        try:
            up = subprocess.run([*base, "up", "-d"], capture_output=True, text=True, timeout=300)
            if up.returncode != 0:
                raise RuntimeError(up.stderr.strip().splitlines()[-1] if up.stderr else "up failed")
            while True:
                ps = subprocess.run([*base, "ps", "--json"], capture_output=True, text=True)
                rows = json.loads(ps.stdout or "[]")
                if sum(r["state"] == "running" for r in rows) >= n:
                    return time.monotonic() - t0
                if time.monotonic() - t0 > 120:
                    raise RuntimeError(f"only {sum(r['state'] == 'running' for r in rows)} of "
                                       f"{n} running after 120 s")
                time.sleep(0.02)
        finally:
            subprocess.run([*base, "down"], capture_output=True, timeout=300)
            sweep(tag)


def bare(n: int, tag: str, wrap: list[str]) -> float:
    """Seconds for a Popen loop to start n children (wrapped, e.g. in bwrap) until all exist."""
    t0 = time.monotonic()
    procs = [subprocess.Popen([*wrap, *idle_cmd(tag)], start_new_session=True)
             for _ in range(n)]
    while len(children(tag)) < n and time.monotonic() - t0 < 60:
        time.sleep(0.005)
    took = time.monotonic() - t0
    for p in procs:
        p.kill()
        p.wait()
    sweep(tag)
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    tag = make_tag()
    bwrap = shutil.which("bwrap")
    sandbox_wrap = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                    "--unshare-pid", "--unshare-net", "--"] if bwrap else None
    samples: dict[str, list[float]] = {}
    failed: dict[str, str] = {}
    started = datetime.datetime.now(datetime.UTC)
    for run in range(args.runs):
        for name, extra in VARIANTS.items():
            if name in failed:
                continue
            try:
                samples.setdefault(name, []).append(corral_up(args.n, tag, extra))
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                failed[name] = str(exc)
            print(f"run {run + 1} {name}: {samples.get(name, ['failed'])[-1]}", file=sys.stderr)
        samples.setdefault("bare Popen", []).append(bare(args.n, tag, []))
        if sandbox_wrap:
            samples.setdefault("bare Popen of bwrap", []).append(bare(args.n, tag, sandbox_wrap))
    median = {k: statistics.median(v) for k, v in samples.items()}
    plain = median.get("plain")
    command = "python bench/containment.py " + shlex.join(sys.argv[1:])
    lines = [BEGIN, "## Containment: start overhead of limits and the sandbox", "",
             f"Produced by `{command}` on {started:%Y-%m-%d %H:%M} UTC: {args.n} idle agents "
             f"per variant, median of {args.runs} interleaved runs, until `corral ps` shows "
             f"all running. Limits: `{json.dumps(LIMITS)}`. Bar: limits and sandbox within "
             "1.3x of plain.", "",
             "| variant | s | vs plain | bar |", "|---|---:|---:|---|"]
    for name in [*VARIANTS, "bare Popen", "bare Popen of bwrap"]:
        if name in failed:
            lines.append(f"| corral {name} | failed | | {failed[name]} |")
        elif name in median:
            ratio = median[name] / plain if plain else None
            shown = f"{ratio:.2f}x" if ratio is not None else ""
            verdict = "" if name in ("plain",) or name.startswith("bare") else (
                "reached" if ratio is not None and ratio <= 1.3 else "**not reached**")
            who = name if name.startswith("bare") else f"corral {name}"
            lines.append(f"| {who} | {median[name]:.2f} | {shown} | {verdict} |")
    emit_block(lines, END, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
