"""corral's own writer of its families (``metrics.text``) gives the very bytes
``prometheus_client.generate_latest`` gives for them: a fleet with hostile names in its label
values (quotes, backslashes, newlines), every family the collector makes, and a family of a
kind the writer hands to prometheus_client's own."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric

from corral.metrics import FleetCollector, text
from corral.metrics.relabel import Parsed
from corral.metrics.scrape import Result, Round, Target


class _Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _reference(families: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)


def test_the_fleet_s_families_are_written_as_prometheus_client_writes_them() -> None:
    odd = 'we"b\\1\nx'
    rows: list[dict[str, Any]] = [
        {"agent": agent, "name": f"{agent}.{i}", "state": state, "restarts": i,
         "exit_code": 3 if state == "exited" else None, "health": health,
         "oom_killed": i == 2, "uptime": 12.5 * i}
        for agent, state, health in (("api", "running", "healthy"), (odd, "exited", None),
                                     ("db", "backoff", "unhealthy"))
        for i in (1, 2)]
    fleet = FleetCollector()
    fleet.rows = rows
    fleet.usage = {"api.1": (1.25, 1 << 30), f"{odd}.2": (1e9, 7)}
    fleet.log_lines = {"api": [1, 2, 3, 4, 5], odd: [0, 0, 0, 0, 12345678901]}
    fleet.forward = {"otlp": {"kind": "otlp", "sent": 10, "up": True, "queue_bytes": 5}}
    target = Target("api", "api.1", "127.0.0.1", 1, "/metrics")
    fleet.agents = Round((target,), [Result(target, True, 0.012, Parsed({}))], b"", {}, 0.0)
    families = list(fleet.collect())
    assert text.exposition(families) == _reference(families)
    assert b'agent="we\\"b\\\\1\\nx"' in text.exposition(families)


def test_a_family_of_another_kind_goes_through_prometheus_client_s_writer() -> None:
    histogram = HistogramMetricFamily("took_seconds", "how long", labels=["agent"])
    histogram.add_metric(["a"], buckets=[("0.1", 1.0), ("+Inf", 3.0)], sum_value=0.5)
    assert text.exposition([histogram]) == _reference([histogram])
