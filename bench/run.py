"""Benchmark corral against supervisord, circus, honcho, PM2 and a minimal baseline.

    python bench/run.py [--quick] [--scenarios S1,S3] [--n 10,100,500]
                        [--tools corral,supervisord,...] [--out docs/benchmarks.md]

Install the competitors first with bench/setup.sh. See docs/benchmarks.md for the method.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import shlex
import signal
import sys
import time

from common import WORK, NotApplicable, ScenarioError, machine_facts, make_tag, sweep
from report import render
from scenarios import (
    Result,
    Session,
    fleet_up,
    log_throughput,
    rest_usage,
    restart_latency,
    status_latency,
    stop_all,
)
from tools import ALL, Tool

SCENARIOS = ["S1", "S2", "S3", "S4", "S5", "S6"]
KEYS = {"S2": ["S2 RSS", "S2 PSS", "S2 CPU"]}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Runner:
    def __init__(self, args: argparse.Namespace, tools: list[type[Tool]]) -> None:
        self.args, self.tools, self.tag = args, tools, make_tag()
        self.results: list[Result] = []
        self.missing: dict[str, str] = {}
        self.cleanup_notes: list[str] = []
        atexit.register(sweep, self.tag)

    def add(self, r: Result) -> None:
        shown = r.status if r.value is None else f"{r.value:.3f}"
        log(f"{r.scenario} N={r.n} {r.tool}: {shown}  {r.note}")
        self.results.append(r)

    def fail(self, scenario: str, n: int | None, tool: str, status: str, why: str) -> None:
        for key in KEYS.get(scenario, [scenario]):
            self.add(Result(key, n, tool, None, status, why))

    def guarded(self, scenario: str, n: int | None, tool: str, fn, *a) -> bool:
        """Run one scenario step; record failure or n/a instead of raising."""
        try:
            out = fn(*a)
        except NotApplicable as e:
            self.fail(scenario, n, tool, "n/a", str(e))
            return False
        except ScenarioError as e:
            self.fail(scenario, n, tool, "failed", str(e))
            return False
        except Exception as e:  # a harness or adapter bug must not stop the run
            self.fail(scenario, n, tool, "failed", f"{type(e).__name__}: {e}")
            return False
        for r in out if isinstance(out, list) else [out]:
            self.add(r)
        return True

    def session(self, cls: type[Tool], body) -> None:
        with Session(cls, self.tag, keep=self.args.keep) as s:
            body(s)
        if s.leftovers:
            why = f" (stop failed: {s.stop_error})" if s.stop_error else ""
            self.cleanup_notes.append(
                f"{cls.name}: processes still alive after its own stop{why}: "
                f"{', '.join(s.leftovers)}; killed by the harness"
            )

    def bring_up(self, s: Session, n: int, record: bool) -> str | None:
        """Start an idle fleet of n (recording S1 if asked); return why it failed, or None."""
        try:
            r = fleet_up(s, n, 120 + 0.6 * n)
        except Exception as e:
            why = str(e) if isinstance(e, ScenarioError) else f"{type(e).__name__}: {e}"
            if record:
                self.fail("S1", n, s.tool.name, "failed", why)
            return why
        if record:
            self.add(r)
        return None

    def usable(self, cls: type[Tool]) -> bool:
        return cls.name not in self.missing

    def fleet_phase(self, n: int, want: set[str]) -> None:
        """S1 at this n; at the largest n also S2, S6 and S5 on the same fleet, in that order."""
        big = n == max(self.args.n)
        for cls in filter(self.usable, self.tools):
            log(f"-- {cls.name}: fleet of {n}")

            def body(s: Session, n: int = n, cls: type[Tool] = cls) -> None:
                why = self.bring_up(s, n, record="S1" in want)
                for sc, fn in (("S2", rest_usage), ("S6", status_latency), ("S5", stop_all)):
                    if not big or sc not in want:
                        continue
                    if why:
                        self.fail(sc, n, cls.name, "failed", "fleet did not come up: " + why)
                    elif sc == "S2":
                        self.guarded(sc, n, cls.name, fn, s, n, 1.0 if self.args.quick else 3.0)
                    else:
                        self.guarded(sc, n, cls.name, fn, s, n)

            self.session(cls, body)

    def run(self, want: set[str]) -> None:
        for cls in self.tools:
            why = cls(WORK, self.tag).missing()
            if why:
                self.missing[cls.name] = why
        ns = sorted(self.args.n) if "S1" in want else [max(self.args.n)]
        for name, why in self.missing.items():
            for sc in sorted(want):
                sizes = {"S1": ns, "S3": [min(self.args.n)], "S4": [self.args.lines]}
                for n in sizes.get(sc, [max(ns)]):
                    self.fail(sc, n, name, "failed", why)
        if want & {"S1", "S2", "S5", "S6"}:
            for n in ns:
                self.fleet_phase(n, want)
        if "S3" in want:
            n = min(self.args.n)
            for cls in filter(self.usable, self.tools):
                log(f"-- {cls.name}: S3 with {n}")
                self.session(cls, lambda s, n=n: self.s3(s, n))
        if "S4" in want:
            lines = self.args.lines
            timeout = 120 + 10 * lines / 10000
            for cls in filter(self.usable, self.tools):
                log(f"-- {cls.name}: S4 with 10 x {lines} lines")
                self.session(
                    cls,
                    lambda s: self.guarded(
                        "S4", lines, s.tool.name, log_throughput, s, lines, timeout
                    ),
                )

    def s3(self, s: Session, n: int) -> None:
        name = s.tool.name
        if not s.tool.has_status:
            why = f"{name} has no status command to observe the restart"
            if name == "honcho":
                why += "; it also has no restart policy (a child's exit stops the whole set)"
            self.fail("S3", n, name, "n/a", why)
            return
        why = self.bring_up(s, n, record=False)
        if why:
            self.fail("S3", n, name, "failed", "fleet did not come up: " + why)
        else:
            self.guarded("S3", n, name, restart_latency, s, n)

    def versions(self) -> list[str]:
        out = []
        for cls in self.tools:
            try:
                v = "not installed" if cls.name in self.missing else cls(WORK, self.tag).version()
            except (ScenarioError, OSError, ValueError, KeyError) as e:
                v = f"unknown ({e})"
            out.append(f"- {cls.name}: {v}")
        return out


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N=10,100 and S4 with 20k lines/child")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--n", default=None, help="fleet sizes, e.g. 10,100,500")
    ap.add_argument("--tools", default=",".join(ALL))
    ap.add_argument("--lines", type=int, default=None, help="S4 lines per child")
    ap.add_argument("--out", default=None, help="write the Markdown report here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs for inspection")
    a = ap.parse_args()
    a.n = [int(x) for x in (a.n or ("10,100" if a.quick else "10,100,500")).split(",")]
    a.lines = a.lines or (20_000 if a.quick else 200_000)
    a.scenarios = [s.strip().upper() for s in a.scenarios.split(",") if s.strip()]
    a.tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    bad = [s for s in a.scenarios if s not in SCENARIOS] + [t for t in a.tools if t not in ALL]
    if bad:
        ap.error(f"unknown scenario/tool: {', '.join(bad)} (tools: {', '.join(ALL)})")
    return a


def write_keeping_blocks(path: str, text: str) -> None:
    """Write the report, keeping the blocks other bench scripts own in that file
    (``<!-- NAME:begin -->`` … ``<!-- NAME:end -->``, e.g. bench/containment.py's)."""
    import re

    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    block = re.compile(r"<!-- (\w+):begin -->.*?<!-- \1:end -->", flags=re.S)
    kept = [m.group(0) for m in block.finditer(old)]
    with open(path, "w") as f:
        f.write(text.rstrip("\n") + "".join("\n\n" + b for b in kept) + "\n")


def main() -> int:
    args = parse()
    command = "python bench/run.py " + shlex.join(sys.argv[1:])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so finally/atexit clean up
    runner = Runner(args, [ALL[t] for t in args.tools])
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    try:
        runner.run(set(args.scenarios))
    finally:
        left = sweep(runner.tag)
        if left:
            runner.cleanup_notes.append(f"final sweep killed {left} process(es)")
    facts = machine_facts()
    header = [
        "# Benchmarks: corral vs supervisord, circus, honcho, PM2 and a minimal baseline",
        "",
        f"Produced by `{command}` on {started:%Y-%m-%d %H:%M} UTC in "
        f"{time.monotonic() - t0:.0f} s (setup: `bash bench/setup.sh`).",
        "",
        f"Machine: {facts['os']}, kernel {facts['kernel']}, {facts['nproc']} CPUs "
        f"({facts['cpu']}), {facts['ram']} RAM, Python {sys.version.split()[0]}.",
        "",
        "Tool versions:",
        "",
        *runner.versions(),
        "",
        "How each tool is configured (its normal config for the job):",
        "",
        *[f"- {c.name}: {c.config_desc}" for c in runner.tools],
        "",
        "Cleanup: " + ("; ".join(runner.cleanup_notes) or "every tool stopped all it started."),
        "",
    ]
    if "corral" not in args.tools:
        header += ["corral was not part of this run (see `--tools` in the command above).", ""]
    roles = {c.name: c.role for c in runner.tools}
    text = render(runner.results, roles, header)
    print(text)
    if args.out:
        write_keeping_blocks(args.out, text)
    WORK.mkdir(exist_ok=True)
    (WORK / "last-results.json").write_text(
        json.dumps([r.__dict__ for r in runner.results], indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
