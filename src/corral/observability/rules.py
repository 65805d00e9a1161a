"""Prometheus alert rules over the metrics corral exports (``corral.metrics``).

Each alert is one ``Alert``: its PromQL over the job that scrapes corral (``{job}`` in the
expressions), how long it must hold (``for``), a severity and the summary users read. The
thresholds are here, once; docs/observability.md lists them, and the tests run every alert
through ``promtool test rules`` (it fires on its failure and stays quiet on a healthy fleet).
The daemon is down when its uptime is absent: a target Prometheus cannot scrape leaves its
series stale, and one it never scraped (a wrong job) has none, so one rule covers both.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Alert(NamedTuple):
    name: str
    expr: str  # ``{job}`` stands for the scrape job's name
    hold: str  # Prometheus' ``for``
    severity: str
    summary: str


ERROR_RATE = 1.0  # error and fatal log records per second, over 5 minutes

ALERTS = (
    Alert("CorralCrashLoop",
          'increase(corral_instance_restarts_total{{job="{job}"}}[10m]) >= 3 and on (job, '
          'agent, instance) max_over_time(corral_instance_state{{job="{job}",state="backoff"}}'
          "[10m]) == 1",
          "0m", "critical",
          "{{ $labels.instance }} crashes in a loop (3 restarts or more in 10 minutes)"),
    Alert("CorralInstanceFatal",
          'corral_instance_state{{job="{job}",state="fatal"}} == 1', "0m", "critical",
          "{{ $labels.instance }} is fatal: corral gave up on it (see corral ps and its logs)"),
    Alert("CorralInstanceOOMKilled",
          'corral_instance_oom_killed{{job="{job}"}} == 1', "0m", "warning",
          "{{ $labels.instance }} was killed for memory in its last run"),
    Alert("CorralProbeFailing",
          'corral_instance_healthy{{job="{job}"}} == 0', "2m", "warning",
          "{{ $labels.instance }} fails its health probe"),
    Alert("CorralRestartRate",
          'increase(corral_instance_restarts_total{{job="{job}"}}[1h]) > 10', "0m", "warning",
          "{{ $labels.instance }} restarted more than 10 times in an hour"),
    Alert("CorralLogErrorRate",
          'sum by (job, agent) (rate(corral_log_lines_total{{job="{job}",level=~"error|fatal"}}'
          f"[5m])) > {ERROR_RATE:g}",
          "5m", "warning",
          f"{{{{ $labels.agent }}}} logs more than {ERROR_RATE:g} error records a second"),
    Alert("CorralAgentScrapeFailing",
          'corral_instance_scrape_up{{job="{job}"}} == 0', "2m", "warning",
          "corral cannot scrape the metrics of {{ $labels.instance }}"),
    Alert("CorralDaemonDown",
          'absent(corral_supervisor_uptime_seconds{{job="{job}"}})', "1m", "critical",
          "corral's daemon does not answer its metrics port (job {{ $labels.job }})"),
)


def expression(alert: Alert, job: str) -> str:
    return alert.expr.format(job=job)


def rules(job: str = "corral") -> dict[str, Any]:
    """The rules file's content: one group of every alert."""
    return {"groups": [{"name": "corral", "rules": [{
        "alert": a.name,
        "expr": expression(a, job),
        "for": a.hold,
        "labels": {"severity": a.severity},
        "annotations": {"summary": a.summary},
    } for a in ALERTS]}]}
