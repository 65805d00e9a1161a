"""Render the results as Markdown: one table per scenario row, ratios vs baseline and best other."""

from __future__ import annotations

from pathlib import Path

from scenarios import Result

# scenario -> (title, unit, lower_is_better, format)
META = {
    "S1": ("S1 cold start of N idle children, until status shows all running", "s", True, ".2f"),
    "S2 RSS": ("S2 supervisor RSS at rest (sum over its processes)", "MB", True, ".1f"),
    "S2 PSS": ("S2 supervisor PSS at rest (shared pages split, sum)", "MB", True, ".1f"),
    "S2 CPU": ("S2 supervisor CPU at rest over 5 s", "%", True, ".2f"),
    "S3": ("S3 restart latency after kill -9 of one child (median of 5)", "ms", True, ".0f"),
    "S4": ("S4 log throughput, 10 children", "lines/s", False, ",.0f"),
    "S5": ("S5 stop-all until no child is left", "s", True, ".2f"),
    "S6": ("S6 status command latency (median of 10)", "ms", True, ".0f"),
}
ORDER = list(META)

METHOD = """\
## Method

- Each tool runs the same workload in the same run, one after the other, each in a fresh temp
  dir, with its normal config for the job (above). Idle children are `/bin/sleep 3600.<tag>`;
  S4 children run `bench/spammer.py` (100-byte lines `#SPAM# <pid> <seq> x…`, written 1000
  lines per `write`, then `exec /bin/sleep`). Everything a run starts carries the tag (in argv,
  or `BENCH_TAG` in its environment): children are counted by a /proc scan, and whatever is
  still alive after the tool's own stop is killed by PID (reported under Cleanup).
- S1: from launching the tool until its status command, polled back to back with a 50 ms pause,
  shows N running; /proc must then show N children too.
- S2: on the largest fleet, 3 s after S1 (1 s with --quick): memory summed over the
  supervisor's own processes (the pid the tool reports plus its descendants, minus the
  children's subtrees). RSS counts pages shared by forked helpers once per process; PSS splits
  them. CPU: utime+stime of those processes over 5 s.
- S3: fleet of the smallest N; kill -9 one child, time until the status shows N running
  without the killed pid; median of 5 kills, 1 s apart. The note gives the median time until
  the new child appeared in /proc, which does not depend on the speed of the status CLI.
- S4: 10 children; from launch until all lines are in the tool's log files (read
  incrementally every 50 ms); then the tool is stopped and every line is checked: lost,
  reordered, duplicated or torn (not exactly one well-formed payload).
- S5: on the largest fleet, after S6: from the stop command until no child is left in /proc.
- S6: on the largest fleet: wall time of the status command, median of 10.
- Ratios are value / reference: "vs baseline" uses bench/baseline.py, "vs best other" the best
  tool that is neither corral nor the baseline. Lower is better except in S4. A value marked
  "(damaged)" was measured but the tool's log storage lost, reordered, duplicated or tore lines;
  such a tool is never picked as the best other. "n/a": the tool lacks what the scenario needs.
- Each value comes from one run (S3 and S6: medians within it). On a small shared machine,
  repeated runs differ by up to ~25%: compare tools within one report, not across reports.
"""


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def ratio(value: float | None, ref: float | None) -> str:
    if value is None or not ref:
        return "—"
    return f"{value / ref:.2f}x"


def table(rows: list[Result], roles: dict[str, str]) -> list[str]:
    key = rows[0].scenario
    title, unit, lower, spec = META[key]
    n = rows[0].n
    label = f"{n:,} lines/child" if key == "S4" else f"N={n}"
    base = next(
        (r.value for r in rows if roles.get(r.tool) == "baseline" and r.status == "ok"), None
    )
    others = [
        r
        for r in rows
        if roles.get(r.tool) == "other"
        and r.status == "ok"
        and r.value is not None
        and not r.flawed
    ]
    best = (min if lower else max)(others, key=lambda r: r.value or 0) if others else None
    better = "lower" if lower else "higher"
    out = [f"### {title}, {label} ({unit}, {better} is better)", ""]
    out.append(
        f"| tool | {unit} | vs baseline | vs best other ({best.tool if best else '—'}) | note |"
    )
    out.append("|---|---:|---:|---:|---|")
    for r in rows:
        if r.status == "ok":
            val = fmt(r.value, spec) + (" (damaged)" if r.flawed else "")
            rb, ro = ratio(r.value, base), ratio(r.value, best.value if best else None)
        else:
            val, rb, ro = r.status, "", ""
        note = r.note.replace("|", "\\|")
        out.append(f"| {r.tool} | {val} | {rb} | {ro} | {note} |")
    return [*out, ""]


def render(results: list[Result], roles: dict[str, str], header: list[str]) -> str:
    groups: dict[tuple[str, int | None], list[Result]] = {}
    for r in results:
        groups.setdefault((r.scenario, r.n), []).append(r)
    lines = [*header, "## Results", ""]
    for key in sorted(groups, key=lambda k: (ORDER.index(k[0]), k[1] or 0)):
        lines += table(sorted(groups[key], key=lambda r: list(roles).index(r.tool)), roles)
    notes = Path(__file__).with_name("analysis.md")  # the people's reading, kept across runs
    extra = "\n" + notes.read_text() if notes.exists() else ""
    return "\n".join(lines) + "\n" + METHOD + extra
