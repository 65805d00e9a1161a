"""A Grafana dashboard (JSON model, schema 39) over the metrics corral exports.

Variables: the Prometheus data source, the scrape job (``job``), and the agents and instances
shown (``agent``, ``instance``: all by default). Rows: the fleet, each instance's runs and
resources, the logs, the agents' own metrics scrapes, the daemon. Every query is a
``Panel`` target here; the tests check each PromQL expression parses and names only metrics
corral's exposition has.
"""

from __future__ import annotations

from typing import Any, NamedTuple

SEL = 'job="$job",agent=~"$agent",instance=~"$instance"'  # an instance metric's selector
JOB = 'job="$job"'


class Panel(NamedTuple):
    title: str
    kind: str  # stat, timeseries, state-timeline
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    description: str = ""


ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    ("Fleet", (
        Panel("Instances running", "stat",
              ((f"sum(corral_instance_up{{{JOB}}})", "running"),
               (f"corral_supervisor_instances{{{JOB}}}", "managed"))),
        Panel("Fatal", "stat",
              ((f'sum(corral_instance_state{{{JOB},state="fatal"}})', "fatal"),)),
        Panel("In backoff", "stat",
              ((f'sum(corral_instance_state{{{JOB},state="backoff"}})', "backoff"),)),
        Panel("Daemon uptime", "stat",
              ((f"corral_supervisor_uptime_seconds{{{JOB}}}", "uptime"),), "s"),
        Panel("State", "state-timeline",
              ((f"max by (instance, state) (corral_instance_state{{{SEL}}}) == 1",
                "{{instance}} {{state}}"),),
              description="each instance's state (running, backoff, fatal...)"),
    )),
    ("Instances", (
        Panel("Up", "timeseries", ((f"corral_instance_up{{{SEL}}}", "{{instance}}"),)),
        Panel("Restarts", "timeseries",
              ((f"increase(corral_instance_restarts_total{{{SEL}}}[$__rate_interval])",
                "{{instance}}"),)),
        Panel("Healthy (probed instances)", "timeseries",
              ((f"corral_instance_healthy{{{SEL}}}", "{{instance}}"),)),
        Panel("OOM killed (last run)", "timeseries",
              ((f"corral_instance_oom_killed{{{SEL}}}", "{{instance}}"),)),
        Panel("Last exit code", "timeseries",
              ((f"corral_instance_last_exit_code{{{SEL}}}", "{{instance}}"),)),
        Panel("CPU", "timeseries",
              ((f"rate(corral_instance_cpu_seconds_total{{{SEL}}}[$__rate_interval])",
                "{{instance}}"),), "percentunit"),
        Panel("Memory (RSS)", "timeseries",
              ((f"corral_instance_memory_rss_bytes{{{SEL}}}", "{{instance}}"),), "bytes"),
        Panel("Uptime", "timeseries",
              ((f"corral_instance_uptime_seconds{{{SEL}}}", "{{instance}}"),), "s"),
    )),
    ("Logs", (
        Panel("Log records by level", "timeseries",
              ((f'sum by (agent, level) (rate(corral_log_lines_total{{{JOB},agent=~"$agent"}}'
                "[$__rate_interval]))", "{{agent}} {{level}}"),), "reqps"),
        Panel("Error rate", "timeseries",
              ((f'sum by (agent) (rate(corral_log_lines_total{{{JOB},agent=~"$agent",'
                'level=~"error|fatal"}[$__rate_interval]))', "{{agent}}"),), "reqps",
              "error and fatal records a second (the CorralLogErrorRate alert)"),
    )),
    ("Agents' own metrics", (
        Panel("Scrape up", "timeseries",
              ((f"corral_instance_scrape_up{{{SEL}}}", "{{instance}}"),)),
        Panel("Scrape duration", "timeseries",
              ((f"corral_instance_scrape_duration_seconds{{{SEL}}}", "{{instance}}"),), "s"),
        Panel("Samples re-exposed / dropped", "timeseries",
              ((f"corral_instance_scrape_samples{{{SEL}}}", "{{instance}} kept"),
               (f"corral_instance_scrape_samples_dropped{{{SEL}}}", "{{instance}} dropped"))),
    )),
    ("Daemon", (
        Panel("Daemon memory", "timeseries",
              ((f"corral_supervisor_process_resident_memory_bytes{{{JOB}}}", "RSS"),), "bytes"),
        Panel("Daemon CPU", "timeseries",
              ((f"rate(corral_supervisor_process_cpu_seconds_total{{{JOB}}}[$__rate_interval])",
                "CPU"),), "percentunit"),
        Panel("Daemon open files", "timeseries",
              ((f"corral_supervisor_process_open_fds{{{JOB}}}", "open"),
               (f"corral_supervisor_process_max_fds{{{JOB}}}", "max"))),
    )),
)

_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _variable(name: str, query: str, *, multi: bool) -> dict[str, Any]:
    return {"name": name, "label": name, "type": "query", "datasource": _DATASOURCE,
            "query": {"query": query, "refId": name}, "definition": query,
            "refresh": 2, "sort": 1, "multi": multi, "includeAll": multi,
            **({"allValue": ".*", "current": {"text": "All", "value": "$__all"}}
               if multi else {})}


def _panel(p: Panel, pid: int, x: int, y: int, width: int) -> dict[str, Any]:
    return {
        "id": pid, "type": p.kind, "title": p.title, "description": p.description,
        "datasource": _DATASOURCE,
        "gridPos": {"h": 4 if p.kind == "stat" else 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "options": {},
        "targets": [{"refId": chr(ord("A") + i), "datasource": _DATASOURCE, "expr": expr,
                     "legendFormat": legend} for i, (expr, legend) in enumerate(p.targets)],
    }


def dashboard(title: str = "corral fleet") -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y, pid = 0, 1
    for row, members in ROWS:
        panels.append({"id": pid, "type": "row", "title": row, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y, x = pid + 1, y + 1, 0
        for p in members:
            width = 6 if p.kind == "stat" else 24 if p.kind == "state-timeline" else 12
            if x + width > 24:
                x, y = 0, y + 8
            panels.append(_panel(p, pid, x, y, width))
            pid, x = pid + 1, x + width
        y += 8
    return {
        "title": title, "uid": "corral-fleet", "tags": ["corral"], "editable": True,
        "schemaVersion": 39, "version": 1, "refresh": "30s", "timezone": "",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource",
             "query": "prometheus", "current": {}},
            _variable("job", "label_values(corral_supervisor_uptime_seconds, job)",
                      multi=False),
            _variable("agent", 'label_values(corral_instance_up{job="$job"}, agent)',
                      multi=True),
            _variable("instance",
                      'label_values(corral_instance_up{job="$job",agent=~"$agent"}, instance)',
                      multi=True),
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


def expressions(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression in a dashboard: its panels' targets and its query variables'
    ``label_values`` selectors."""
    out = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            query = v["query"]["query"]
            out.append(query[len("label_values("):query.rindex(",")])
    return out
