"""What ``corral top`` shows of each instance: the daemon's rows (its status, then its state
events), and CPU and memory from the usage samples of its ``/metrics``.

No Textual here: the table's cells are plain strings, and the tests read them as they are.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from corral.cli import render

# (key, heading): the table's columns
COLUMNS = (("name", "NAME"), ("state", "STATE"), ("health", "HEALTH"),
           ("restarts", "RESTARTS"), ("uptime", "UPTIME"), ("cpu", "CPU"), ("mem", "MEM"),
           ("pid", "PID"), ("reason", "REASON"))
_CPU = "corral_instance_cpu_seconds_total"
_RSS = "corral_instance_memory_rss_bytes"
_INSTANCE = re.compile(r'[{,]instance="((?:[^"\\]|\\.)*)"')


def usage_samples(exposition: str) -> dict[str, tuple[float, int]]:
    """Each running instance's CPU seconds and resident bytes, from ``/metrics``' text (two
    families read by their names: the rest, however long, is skipped a line at a time)."""
    cpu: dict[str, float] = {}
    rss: dict[str, int] = {}
    for line in exposition.splitlines():
        is_cpu = line.startswith(_CPU + "{")
        if not (is_cpu or line.startswith(_RSS + "{")):
            continue
        labels, _, value = line.rpartition("} ")
        found = _INSTANCE.search(labels)
        if found is None:
            continue
        try:
            number = float(value.split()[0])
        except (ValueError, IndexError):
            continue
        if is_cpu:
            cpu[found[1]] = number
        else:
            rss[found[1]] = int(number)
    return {name: (cpu[name], rss[name]) for name in cpu.keys() & rss.keys()}


def size(n: int | None) -> str:
    """Bytes as ``ps`` people read them: 812B, 4.2K, 37.5M, 1.2G."""
    if n is None:
        return "-"
    if n < 1024:
        return f"{n}B"
    value = n / 1024
    for unit in ("K", "M"):
        if value < 1024:
            return f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}G"


@dataclass
class Fleet:
    """The instances by name, their latest usage, and the CPU share between two samples."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    cpu_share: dict[str, float] = field(default_factory=dict)  # percent of one core
    rss: dict[str, int] = field(default_factory=dict)
    _sampled: dict[str, tuple[float, float]] = field(default_factory=dict)  # cpu s, at
    events: int = 0  # the state events applied so far
    _changed: dict[str, int] = field(default_factory=dict)  # ``events`` at each one's last

    def replace(self, rows: list[dict[str, Any]], asked_at: int | None = None) -> None:
        """The daemon's whole status: instances gone from it (removed, scaled down) go.
        ``asked_at``: ``events`` when the status was asked for. An instance an event changed
        since keeps what the event said: the status may be older than the event."""
        newer = {name: self.rows[name] for name, at in self._changed.items()
                 if asked_at is not None and at > asked_at and name in self.rows}
        self.rows = {row["name"]: row for row in rows} | newer
        self._changed = {name: at for name, at in self._changed.items() if name in self.rows}
        for kept in (self.cpu_share, self.rss, self._sampled):
            for name in kept.keys() - self.rows.keys():
                del kept[name]

    def update(self, row: dict[str, Any]) -> None:
        """A state event: the instance's fields as they now are (a new instance too)."""
        self.rows[row["name"]] = {**self.rows.get(row["name"], {}), **row}
        self.events += 1
        self._changed[row["name"]] = self.events

    def sample(self, usage: dict[str, tuple[float, int]], at: float) -> None:
        """Usage sampled at monotonic time ``at``; an instance not running has none."""
        for name, (cpu, rss) in usage.items():
            before = self._sampled.get(name)
            if before is not None and at > before[1] and cpu >= before[0]:
                self.cpu_share[name] = 100.0 * (cpu - before[0]) / (at - before[1])
            self._sampled[name] = (cpu, at)
            self.rss[name] = rss
        for kept in (self.cpu_share, self.rss, self._sampled):
            for name in kept.keys() - usage.keys():
                del kept[name]

    def shown(self, text: str = "") -> list[str]:
        """The names of the instances whose name holds ``text``, by agent, then index."""
        rows = (r for r in self.rows.values() if text.lower() in r["name"].lower())
        return [r["name"] for r in sorted(rows, key=lambda r: (r["agent"], r["index"]))]

    def agent_count(self, agent: str) -> int:
        return sum(1 for r in self.rows.values() if r["agent"] == agent)

    def cells(self, name: str, now: float | None = None) -> tuple[str, ...]:
        """The row's cells, in the order of ``COLUMNS``."""
        r = self.rows[name]
        now = time.time() if now is None else now
        running = r["state"] == "running" and r.get("started_at") is not None
        share = self.cpu_share.get(name)
        return (r["name"], r["state"], r["health"], str(r["restarts"]),
                render.duration(now - r["started_at"]) if running else "-",
                f"{share:.1f}%" if share is not None else "-",
                size(self.rss.get(name)), str(r.get("pid") or "-"),
                render.one_line(r.get("reason") or ""))
