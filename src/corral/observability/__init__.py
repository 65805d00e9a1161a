"""What ``corral observability export`` writes: a Grafana dashboard, Prometheus alert rules,
and the scrape job they expect, for the metrics corral exports (``corral.metrics``).

corral's instance metrics carry their own ``instance`` label (``web.1``), so Prometheus must
scrape corral with ``honor_labels: true``; the scrape job written here says so.
"""

from __future__ import annotations

import json

DASHBOARD = "corral-dashboard.json"
RULES = "corral-alerts.yml"
SCRAPE = "prometheus-scrape.yml"
PLACEHOLDER = "127.0.0.1:METRICS_PORT"  # no metrics port known: Prometheus refuses it


def scrape_job(job: str, target: str) -> dict[str, object]:
    return {"job_name": job, "honor_labels": True, "scrape_interval": "15s",
            "static_configs": [{"targets": [target]}]}


def files(job: str = "corral", target: str = PLACEHOLDER) -> dict[str, str]:
    """The exported files by name: ``target`` is corral's metrics address (``metrics.port``)."""
    import yaml

    from corral.observability.dashboard import dashboard
    from corral.observability.rules import rules

    head = "# written by corral observability export\n"
    scrape = yaml.safe_dump({"scrape_configs": [scrape_job(job, target)]}, sort_keys=False)
    return {
        DASHBOARD: json.dumps(dashboard(), indent=2) + "\n",
        RULES: head + yaml.safe_dump(rules(job), sort_keys=False, width=1000),
        SCRAPE: head + "# add to prometheus.yml (rule_files: [corral-alerts.yml] too)\n"
                + scrape,
    }
