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
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, CpuGroup, children, emit_block, idle_cmd, make_tag, sweep

CORRAL = REPO / ".venv" / "bin" / "corral"
BEGIN, END = "<!-- containment:begin -->", "<!-- containment:end -->"
LIMITS = {"cpus": 0.5, "memory": "64M", "pids": 64}
VARIANTS = {
    "plain": {},
    "limits": {"resources": LIMITS},
    "sandbox": {"isolation": "sandbox", "network": "none"},
    "sandbox+limits": {"isolation": "sandbox", "network": "none", "resources": LIMITS},
}


class Meter:
    """Wall time and, where a cgroup can count it, the CPU all started processes used."""

    def __init__(self, cpu: CpuGroup | None) -> None:
        self.cpu = cpu
        self.t0 = self.c0 = 0.0

    def start(self) -> None:
        if self.cpu:
            self.cpu.enter()
            self.c0 = self.cpu.seconds()
        self.t0 = time.monotonic()

    def started(self) -> None:
        """What was measured is launched: this process leaves the group, its polls are not
        counted (what it started stays in)."""
        if self.cpu:
            self.cpu.leave()

    def read(self) -> tuple[float, float | None]:
        took = time.monotonic() - self.t0
        return took, (self.cpu.seconds() - self.c0) if self.cpu else None


def corral_up(n: int, tag: str, extra: dict[str, object],
              meter: Meter) -> tuple[float, float | None]:
    """Seconds from `corral up -d` until `corral ps` shows n running, and the CPU used."""
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as d:
        manifest = Path(d) / "corral.yaml"
        agent = {"command": idle_cmd(tag), "replicas": n, **extra}
        manifest.write_text(json.dumps({"name": "contain", "agents": {"idle": agent}}))
        base = [str(CORRAL), "-f", str(manifest)]
        meter.start()
        try:
            up = subprocess.run([*base, "up", "-d"], capture_output=True, text=True, timeout=300)
            meter.started()
            if up.returncode != 0:
                raise RuntimeError(up.stderr.strip().splitlines()[-1] if up.stderr else "up failed")
            while True:
                ps = subprocess.run([*base, "ps", "--json"], capture_output=True, text=True)
                rows = json.loads(ps.stdout or "[]")
                if sum(r["state"] == "running" for r in rows) >= n:
                    return meter.read()
                if time.monotonic() - meter.t0 > 120:
                    raise RuntimeError(f"only {sum(r['state'] == 'running' for r in rows)} of "
                                       f"{n} running after 120 s")
                time.sleep(0.02)
        finally:
            meter.started()
            subprocess.run([*base, "down"], capture_output=True, timeout=300)
            sweep(tag)


def bare(n: int, tag: str, wrap: list[str], meter: Meter) -> tuple[float, float | None]:
    """Seconds for a Popen loop to start n children (wrapped, e.g. in bwrap) until all exist,
    and the CPU used."""
    meter.start()
    procs = [subprocess.Popen([*wrap, *idle_cmd(tag)], start_new_session=True)
             for _ in range(n)]
    meter.started()
    while len(children(tag)) < n and time.monotonic() - meter.t0 < 60:
        time.sleep(0.005)
    took = meter.read()
    for p in procs:
        p.kill()
        p.wait()
    sweep(tag)
    return took


def _sandbox_wrap(workdir: str) -> list[str] | None:
    """bwrap as corral's sandbox runs it (the same view rules), for the bare reference."""
    from corral.drivers.host import bwrap

    found = bwrap.find_bwrap()
    if found is None:
        return None
    view = bwrap.View(workdir=workdir, hidden=(*bwrap.default_hidden(dict(os.environ)),),
                      network="none")
    return bwrap.argv(view, [], bwrap=found)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    tag = make_tag()
    cpu = CpuGroup.make()
    meter = Meter(cpu)
    samples: dict[str, list[tuple[float, float | None]]] = {}
    failed: dict[str, str] = {}
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory(prefix="corral-bench-box-") as box:
        sandbox_wrap = _sandbox_wrap(box)
        try:
            for run in range(args.runs):
                for name, extra in VARIANTS.items():
                    if name in failed:
                        continue
                    try:
                        samples.setdefault(name, []).append(
                            corral_up(args.n, tag, extra, meter))
                    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                        failed[name] = str(exc)
                    print(f"run {run + 1} {name}: {samples.get(name, ['failed'])[-1]}",
                          file=sys.stderr)
                samples.setdefault("boot", []).append(corral_up(1, tag, {}, meter))
                samples.setdefault("bare Popen", []).append(bare(args.n, tag, [], meter))
                if sandbox_wrap:
                    samples.setdefault("bare Popen of bwrap", []).append(
                        bare(args.n, tag, sandbox_wrap, meter))
        finally:
            if cpu:
                cpu.close()
    emit_block(report(args, samples, failed, started), END, args.out)
    return 0


def report(args: argparse.Namespace, samples: dict[str, list[tuple[float, float | None]]],
           failed: dict[str, str], started: datetime.datetime) -> list[str]:
    wall = {k: statistics.median(w for w, _ in v) for k, v in samples.items()}
    cpu = {k: statistics.median(c for _, c in v if c is not None)
           for k, v in samples.items() if all(c is not None for _, c in v)}
    plain = wall.get("plain")
    cores = os.cpu_count() or 1
    command = "python bench/containment.py " + shlex.join(sys.argv[1:])
    lines = [BEGIN, "## Containment: start overhead of limits and the sandbox", "",
             f"Produced by `{command}` on {started:%Y-%m-%d %H:%M} UTC on {cores} cores: "
             f"{args.n} idle agents per variant, median of {args.runs} interleaved runs, until "
             f"`corral ps` shows all running. Limits: `{json.dumps(LIMITS)}`. Bar: limits and "
             "sandbox within 1.3x of plain. CPU: all the CPU the run's processes used (the "
             "CLI, the daemon, the agents, bwrap; kernel work done for them included), counted "
             "by a cgroup made for the run; the polling `corral ps` not counted. The bare rows "
             "start the same children from a Popen loop; their bwrap is corral's view.", "",
             "| variant | s | vs plain | CPU s | bar |", "|---|---:|---:|---:|---|"]
    for name in [*VARIANTS, "boot", "bare Popen", "bare Popen of bwrap"]:
        if name in failed:
            lines.append(f"| corral {name} | failed | | | {failed[name]} |")
        elif name in wall:
            ratio = wall[name] / plain if plain else None
            shown = f"{ratio:.2f}x" if ratio is not None else ""
            verdict = "" if name in ("plain", "boot") or name.startswith("bare") else (
                "reached" if ratio is not None and ratio <= 1.3 else "**not reached**")
            who = (name if name.startswith("bare") else "corral up -d of 1 plain agent"
                   if name == "boot" else f"corral {name}")
            used = f"{cpu[name]:.2f}" if name in cpu else "n/a"
            lines.append(f"| {who} | {wall[name]:.2f} | {shown} | {used} | {verdict} |")
    if plain and {"plain", "boot", "bare Popen", "bare Popen of bwrap"} <= cpu.keys():
        launch = (cpu["bare Popen of bwrap"] - cpu["bare Popen"]) / args.n
        # before its first agent starts, a run is the CLI and the daemon's boot (the "boot"
        # row: one plain agent); no sandbox's work can overlap that, the rest takes the cores
        rest = max(0.0, cpu["plain"] - cpu["boot"]) + args.n * launch
        floor = wall["boot"] + rest / cores
        lines += ["", f"The floor the cores set: one bwrap launch with corral's view costs "
                  f"{launch * 1000:.1f} ms of CPU (the bare rows), nearly all of it the "
                  f"kernel's namespace and mount work. `corral up -d` of one plain agent (the "
                  f"CLI, the daemon's boot, one start) takes {wall['boot']:.2f} s, and no "
                  "sandbox starts before that is over; what comes after it needs at least "
                  f"plain's own CPU beyond that boot ({cpu['plain'] - cpu['boot']:.2f} s) plus "
                  f"{args.n} launches ({args.n * launch:.2f} s): {rest:.2f} s of CPU, at least "
                  f"{rest / cores:.2f} s on {cores} cores. So no scheduling starts {args.n} "
                  f"sandboxed agents here in under {floor:.2f} s = {floor / plain:.2f}x plain "
                  f"(on 4 cores the same CPU would allow "
                  f"{(wall['boot'] + rest / 4) / plain:.2f}x)."]
    return lines


if __name__ == "__main__":
    sys.exit(main())
