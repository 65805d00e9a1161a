"""Every Prometheus metric corral exposes, in one place, built from snapshots at scrape time.

Nothing is mutated on the hot path: a scrape reads the runners' snapshots and the drivers'
usage figures and renders them, so an idle fleet costs nothing between scrapes. The log
lines per level are the counts the log sink keeps per agent (``logs.records``); the agents'
own samples (``metrics:``) come from ``scrape`` and ``relabel``, after corral's own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from corral.logs.records import LEVELS
from corral.metrics import text
from corral.runtime.state import State

if TYPE_CHECKING:
    from corral.metrics.scrape import Round

_LABELS = ["agent", "instance"]


class FleetCollector:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.usage: dict[str, tuple[float, int]] = {}
        self.log_lines: dict[str, list[int]] = {}  # agent -> records per level (LEVELS)
        self.agents: Round | None = None  # the last round of the agents' own metrics
        self.forward: dict[str, dict[str, Any]] = {}  # sink -> the forwarder's counters
        self.started_at = time.time()

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("corral_instance_up", "1 when the instance is running",
                               labels=_LABELS)
        state = GaugeMetricFamily("corral_instance_state",
                                  "1 for the instance's current state", labels=[*_LABELS, "state"])
        restarts = CounterMetricFamily("corral_instance_restarts",
                                       "restarts since the instance was created", labels=_LABELS)
        exit_code = GaugeMetricFamily("corral_instance_last_exit_code",
                                      "exit code of the last run (absent before any exit)",
                                      labels=_LABELS)
        healthy = GaugeMetricFamily("corral_instance_healthy",
                                    "1 healthy, 0 unhealthy (probed instances with a verdict)",
                                    labels=_LABELS)
        oom = GaugeMetricFamily("corral_instance_oom_killed",
                                "1 when the last run ended in an OOM kill", labels=_LABELS)
        cpu = CounterMetricFamily("corral_instance_cpu_seconds",
                                  "CPU time used by the running instance", labels=_LABELS)
        rss = GaugeMetricFamily("corral_instance_memory_rss_bytes",
                                "resident memory of the running instance", labels=_LABELS)
        uptime = GaugeMetricFamily("corral_instance_uptime_seconds",
                                   "seconds since the running instance started", labels=_LABELS)
        for row in self.rows:
            labels = [row["agent"], row["name"]]
            running = row["state"] == State.RUNNING.value
            up.add_metric(labels, 1.0 if running else 0.0)
            for s in State:
                state.add_metric([*labels, s.value], 1.0 if row["state"] == s.value else 0.0)
            restarts.add_metric(labels, float(row["restarts"]))
            if row["exit_code"] is not None:
                exit_code.add_metric(labels, float(row["exit_code"]))
            if row["health"] in ("healthy", "unhealthy"):
                healthy.add_metric(labels, 1.0 if row["health"] == "healthy" else 0.0)
            oom.add_metric(labels, 1.0 if row["oom_killed"] else 0.0)
            if row["uptime"] is not None:
                uptime.add_metric(labels, float(row["uptime"]))
            usage = self.usage.get(row["name"])
            if usage is not None and running:
                cpu.add_metric(labels, usage[0])
                rss.add_metric(labels, float(usage[1]))
        yield from (up, state, restarts, exit_code, healthy, oom, cpu, rss, uptime)
        n = GaugeMetricFamily("corral_supervisor_instances", "instances managed")
        n.add_metric([], float(len(self.rows)))
        age = GaugeMetricFamily("corral_supervisor_uptime_seconds", "seconds since daemon start")
        age.add_metric([], time.time() - self.started_at)
        yield n
        yield age
        yield from self._logs()
        yield from self._forward()
        yield from self._scrapes()

    def _logs(self) -> Iterable[Metric]:
        lines = CounterMetricFamily("corral_log_lines", "log records written, by level "
                                    "(a stack is one record)", labels=["agent", "level"])
        for agent, counts in sorted(self.log_lines.items()):
            for level, count in zip(LEVELS, counts, strict=True):
                lines.add_metric([agent, level], float(count))
        yield lines

    def _forward(self) -> Iterable[Metric]:
        """``logs.forward``'s sinks, as the forwarder last reported them (none without)."""
        if not self.forward:
            return
        labels = ["sink", "kind"]
        sent = CounterMetricFamily("corral_log_forward_sent", "records a sink took",
                                   labels=labels)
        dropped = CounterMetricFamily("corral_log_forward_dropped", "records dropped: the "
                                      "sink's queue was full", labels=labels)
        rejected = CounterMetricFamily("corral_log_forward_rejected", "records the sink "
                                       "refused for good", labels=labels)
        failures = CounterMetricFamily("corral_log_forward_failures", "sends that failed "
                                       "(retried with backoff)", labels=labels)
        up = GaugeMetricFamily("corral_log_forward_up", "1 when the sink's last send worked",
                               labels=labels)
        queued = GaugeMetricFamily("corral_log_forward_queue_bytes", "bytes of records "
                                   "waiting in the sink's on-disk queue", labels=labels)
        records = GaugeMetricFamily("corral_log_forward_queue_records", "records waiting in "
                                    "the sink's on-disk queue", labels=labels)
        limit = GaugeMetricFamily("corral_log_forward_queue_limit_bytes", "the bound of the "
                                  "sink's queue (logs.forward[].queue)", labels=labels)
        for name, st in sorted(self.forward.items()):
            key = [name, str(st.get("kind", ""))]
            sent.add_metric(key, float(st.get("sent", 0)))
            dropped.add_metric(key, float(st.get("dropped", 0)))
            rejected.add_metric(key, float(st.get("rejected", 0)))
            failures.add_metric(key, float(st.get("failures", 0)))
            up.add_metric(key, 1.0 if st.get("up") else 0.0)
            queued.add_metric(key, float(st.get("queue_bytes", 0)))
            records.add_metric(key, float(st.get("queue_records", 0)))
            limit.add_metric(key, float(st.get("queue_limit", 0)))
        yield from (sent, dropped, rejected, failures, up, queued, records, limit)

    def _scrapes(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("corral_instance_scrape_up", "1 when corral's last scrape of "
                               "the instance's own metrics worked", labels=_LABELS)
        samples = GaugeMetricFamily("corral_instance_scrape_samples", "samples of the "
                                    "instance re-exposed", labels=_LABELS)
        dropped = GaugeMetricFamily("corral_instance_scrape_samples_dropped", "lines of the "
                                    "instance's exposition left out", labels=_LABELS)
        took = GaugeMetricFamily("corral_instance_scrape_duration_seconds", "how long the "
                                 "last scrape of the instance took", labels=_LABELS)
        results = self.agents.results if self.agents is not None else []
        clashes = self.agents.clashes if self.agents is not None else {}
        for i, r in enumerate(results):
            labels = [r.target.agent, r.target.instance]
            clashed = clashes.get(i, 0)
            up.add_metric(labels, 1.0 if r.up else 0.0)
            samples.add_metric(labels, float(r.parsed.samples - clashed))
            dropped.add_metric(labels, float(r.parsed.dropped + clashed))
            took.add_metric(labels, r.duration)
        yield from (up, samples, dropped, took)


class Metrics:
    def __init__(self) -> None:
        self.fleet = FleetCollector()
        # the daemon's own process (a few samples) through prometheus_client's writer; the
        # fleet's families, thousands of samples, through ``text``
        self.process = CollectorRegistry(auto_describe=False)
        ProcessCollector(namespace="corral_supervisor", registry=self.process)

    def render(self, rows: list[dict[str, Any]], usage: dict[str, tuple[float, int]],
               log_lines: dict[str, list[int]] | None = None,
               agents: Round | None = None,
               forward: dict[str, dict[str, Any]] | None = None) -> bytes:
        """corral's own metrics, then the agents' samples of ``agents`` (``scrape.Round``)."""
        self.fleet.rows = rows
        self.fleet.usage = usage
        self.fleet.log_lines = log_lines or {}
        self.fleet.agents = agents
        self.fleet.forward = forward or {}
        own = text.exposition(self.fleet.collect()) + generate_latest(self.process)
        return own + agents.text if agents is not None and agents.text else own


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
