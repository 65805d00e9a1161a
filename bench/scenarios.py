"""The scenarios S1-S6. Each function measures one tool and returns Result rows.

A scenario raises ScenarioError (failed, one-line reason) or NotApplicable (n/a, why).
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from common import (
    CLK_TCK,
    NotApplicable,
    ScenarioError,
    alive,
    children,
    cmdline,
    cpu_ticks,
    idle_cmd,
    rss_mb,
    spam_cmd,
    supervisor_pids,
    sweep,
    tagged,
    wait_for,
)
from logcheck import LogCounter, verify
from tools import Fleet, Tool

POLL = 0.05  # pause between two status polls, the same for every tool


@dataclass
class Result:
    scenario: str  # "S1", "S2 RSS", "S2 PSS", "S2 CPU", "S3", "S4", "S5", "S6"
    n: int | None
    tool: str
    value: float | None = None
    status: str = "ok"  # ok | failed | n/a
    note: str = ""
    flawed: bool = False  # measured, but the output was damaged (S4: lost/torn/... lines)


class Session:
    """A fresh temp dir and tool instance; on exit everything it started is stopped by PID."""

    def __init__(self, cls: type[Tool], tag: str, keep: bool = False) -> None:
        self.dir = tempfile.mkdtemp(prefix=f"cbench-{cls.name}-")
        self.tool = cls(Path(self.dir), tag)
        self.tag, self.keep = tag, keep
        self.stopped = False
        self.t_start = time.monotonic()
        self.stop_error = ""
        self.leftovers: list[str] = []  # names of processes alive after the tool's own stop

    def __enter__(self) -> Session:
        self.t_start = time.monotonic()
        return self

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.tool.stop()

    def __exit__(self, *exc: object) -> None:
        """Stop with the tool's own command, then kill by PID whatever is still alive."""
        try:
            if self.tool.fleet is not None:
                # never stop a tool in the middle of its start-up (honcho, e.g., loses track of
                # children it has not yet reported when SIGTERM comes within ~0.2 s)
                time.sleep(max(0.0, 1.0 - (time.monotonic() - self.t_start)))
                self.stop()
                wait_for(lambda: not children(self.tag), 20, "children to exit", 0.1)
                wait_for(lambda: not tagged(self.tag), 10, "the supervisor to exit", 0.1)
        except Exception as e:
            self.stop_error = str(e) or type(e).__name__
        finally:
            left = tagged(self.tag)
            self.leftovers = sorted({Path((cmdline(p) or ["?"])[0]).name for p in left})
            self.tool.cleanup()
            sweep(self.tag)
            if not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)


def running_pids(tool: Tool) -> set[int]:
    return {i.pid for i in tool.instances() if i.running and i.pid}


# ------------------------------------------------------------------ S1


def fleet_up(s: Session, n: int, timeout: float) -> Result:
    """Start N idle children; S1 = launch until the tool's status shows all N running."""
    tool, fleet = s.tool, Fleet("idle", n, idle_cmd(s.tag))
    t0 = time.monotonic()
    tool.start(fleet)

    def left() -> float:
        return timeout - (time.monotonic() - t0)

    if not tool.has_status:
        wait_for(lambda: len(children(s.tag)) >= n, left(), f"{n} children in /proc", POLL)
        took = time.monotonic() - t0
        why = f"{tool.name} has no status command; /proc scan saw all {n} after {took:.2f} s"
        return Result("S1", n, tool.name, None, "n/a", why)
    wait_for(lambda: len(running_pids(tool)) >= n, left(), f"{n} running in status", POLL)
    took = time.monotonic() - t0
    wait_for(lambda: len(children(s.tag)) >= n, max(left(), 5), f"{n} children in /proc", POLL)
    return Result("S1", n, tool.name, took, note=f"polled {tool.status_desc}")


# ------------------------------------------------------------------ S2


def rest_usage(s: Session, n: int, settle: float = 3.0, window: float = 5.0) -> list[Result]:
    time.sleep(settle)
    pids = supervisor_pids(s.tool.roots(), s.tag)
    if not pids:
        raise ScenarioError("no supervisor process found from the pid the tool reports")
    c0, t0 = cpu_ticks(pids), time.monotonic()
    time.sleep(window)
    c1, t1 = cpu_ticks(pids), time.monotonic()
    rss, pss = rss_mb(pids)
    cpu = (c1 - c0) / CLK_TCK / (t1 - t0) * 100
    note = f"{len(pids)} process(es)"
    return [
        Result("S2 RSS", n, s.tool.name, rss, note=note),
        Result("S2 PSS", n, s.tool.name, pss, note=note),
        Result("S2 CPU", n, s.tool.name, cpu, note=f"over {window:.0f} s, {len(pids)} process(es)"),
    ]


# ------------------------------------------------------------------ S3


def _watch_proc(tag: str, before: set[int], out: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        if set(children(tag)) - before:
            out.append(time.monotonic())
            return
        time.sleep(0.005)


def _all_running(tool: Tool, n: int, timeout: float, what: str, without: int = 0) -> set[int]:
    def check() -> set[int] | None:
        p = running_pids(tool)
        return p if len(p) >= n and without not in p else None

    return wait_for(check, timeout, what, POLL)


def restart_latency(s: Session, n: int, kills: int = 5, timeout: float = 60) -> Result:
    tool = s.tool
    if not tool.has_status:
        raise NotApplicable(f"{tool.name} has no status command")
    status_ms, proc_ms = [], []
    for k in range(kills):
        before = _all_running(tool, n, timeout, f"{n} running before kill {k + 1}")
        victim = sorted(before)[k % len(before)]
        proc_seen: list[float] = []
        stop = threading.Event()
        watcher = threading.Thread(
            target=_watch_proc, args=(s.tag, set(children(s.tag)), proc_seen, stop)
        )
        watcher.start()
        try:
            t0 = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            _all_running(tool, n, timeout, f"a new pid after kill {k + 1}", without=victim)
            status_ms.append((time.monotonic() - t0) * 1000)
        finally:
            stop.set()
            watcher.join()
        if proc_seen:
            proc_ms.append((proc_seen[0] - t0) * 1000)
        time.sleep(1.0)  # stay clear of "unstable restart" windows (PM2 min_uptime 1 s)
    proc = f"{statistics.median(proc_ms):.0f} ms" if proc_ms else "not seen"
    return Result(
        "S3",
        n,
        tool.name,
        statistics.median(status_ms),
        note=f"polled {tool.status_desc}; new child in /proc: median {proc}",
    )


# ------------------------------------------------------------------ S4


def log_throughput(s: Session, lines: int, timeout: float) -> Result:
    tool, n = s.tool, 10
    expected = n * lines
    counter = LogCounter(tool.log_files)
    t0 = time.monotonic()
    tool.start(Fleet("spam", n, spam_cmd(s.tag, lines)))
    last_count, last_change, stalled_since = 0, t0, None
    while True:
        count = counter.poll()
        now = time.monotonic()
        if count != last_count:
            last_count, last_change, stalled_since = count, now, None
        if count >= expected:
            break
        if now - t0 > timeout:
            raise ScenarioError(f"timeout after {timeout:.0f}s: {count} of {expected} lines stored")
        kids = children(s.tag)
        if len(kids) >= n and all(cmdline(p)[:1] == ["/bin/sleep"] for p in kids):
            stalled_since = stalled_since or now
            if now - max(stalled_since, last_change) > 3:
                break  # writers are done and nothing has arrived for 3 s: lines were lost
        time.sleep(0.05)
    elapsed = last_change - t0
    s.stop()  # flush and close the tool's files before reading them
    wait_for(lambda: not children(s.tag), 60, "children to exit after stop", 0.1)
    v = verify(tool.log_files(), n, lines)
    note = v.summary() + ("; " + "; ".join(v.notes) if v.notes else "")
    if count < expected:
        note = f"INCOMPLETE at the {elapsed:.1f} s mark ({count} stored); " + note
    flawed = count < expected or not v.ok()
    return Result(
        "S4",
        lines,
        tool.name,
        count / elapsed if elapsed > 0 else None,
        note=f"{elapsed:.2f} s; " + note,
        flawed=flawed,
    )


# ------------------------------------------------------------------ S5, S6


def stop_all(s: Session, n: int, timeout: float = 120) -> Result:
    roots = s.tool.roots()
    t0 = time.monotonic()
    s.stop()
    t_cmd = time.monotonic() - t0
    wait_for(lambda: not children(s.tag), timeout, "all children to exit", 0.02)
    took = time.monotonic() - t0
    note = f"stop command returned after {t_cmd:.2f} s"
    try:
        wait_for(lambda: not any(alive(p) for p in roots), 30, "", 0.05)
    except ScenarioError:
        note += "; supervisor still alive 30 s later"
    return Result("S5", n, s.tool.name, took, note=note)


def _time_cmd(s: Session, cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        res = subprocess.run(cmd, env=s.tool.env, cwd=s.dir, capture_output=True, timeout=120)
        times.append((time.monotonic() - t0) * 1000)
        if res.returncode != 0:
            raise ScenarioError(f"{cmd[0].rsplit('/', 1)[-1]} exit {res.returncode}")
    return statistics.median(times)


def status_latency(s: Session, n: int, runs: int = 10) -> Result:
    tool = s.tool
    cmd = tool.status_cmd()
    ms = _time_cmd(s, cmd, runs)
    extra = getattr(tool, "s6_extra", dict)()
    notes = [f"{tool.status_desc}, median of {runs}"]
    notes += [f"{label}: {_time_cmd(s, c, runs):.0f} ms" for label, c in extra.items()]
    return Result("S6", n, tool.name, ms, note="; ".join(notes))
