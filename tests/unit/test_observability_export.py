"""``corral observability export``: the alert rules checked and unit-tested by Prometheus' own
promtool (synthetic series for every alert: each fires on its failure, none on a healthy
fleet), and every PromQL expression of the dashboard and the rules parsed by promtool and
naming only metrics (and labels, and label values) corral's exposition has.

Why a small extractor of metric names rather than a PromQL parser in Python: promtool parses
every expression (a real parser: a syntax error fails ``check rules``); what is left to find is
the selectors, and in these expressions a selector is a name with an optional ``{...}`` that
is not a function call, keyword or grouping list. The extractor refuses what it does not
expect (a string outside a matcher, a selector without a name), so a new kind of expression
fails here rather than passing unchecked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from corral.cli.main import main
from corral.metrics import Metrics, relabel, scrape
from corral.observability import DASHBOARD, RULES, SCRAPE
from corral.observability.dashboard import dashboard, expressions
from corral.observability.rules import ALERTS, ERROR_RATE, expression
from corral.runtime.state import State

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is not installed: scripts/install.sh "
                                           "--test installs it (apt-get install prometheus)")
GRAFANA = {"$job": "corral", "$agent": ".*", "$instance": ".*", "$__rate_interval": "1m"}


def exposition() -> dict[str, list[dict[str, str]]]:
    """corral's exposition with every family filled: a fleet in each state, probed, with an
    exit, usage, logs and an agent's own metrics scraped (and one scrape failed)."""
    rows = [{"agent": "web", "name": f"web.{i}", "state": s.value, "restarts": i,
             "exit_code": 1, "health": "unhealthy", "oom_killed": True, "uptime": 5.0}
            for i, s in enumerate(State, 1)]
    usage = {r["name"]: (1.5, 1 << 20) for r in rows}
    parsed = relabel.parse("app_hits_total 3\n", "web", "web.1", max_samples=10)
    target = scrape.Target("web", "web.1", "127.0.0.1", 1, "/metrics")
    results = [scrape.Result(target, True, 0.01, parsed),
               scrape.Result(target._replace(instance="web.2"), False, 1.0, error="refused")]
    text = Metrics().render(rows, usage, {"web": [1, 2, 3, 4, 5]},
                            scrape.collected(results)).decode()
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample.labels)
    return out


_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(\{[^{}]*\})?(\s*\()?")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*,?')
_KEYWORDS = {"and", "or", "unless", "bool", "offset"}


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(metric name, [(label, op, value)]) of every selector in ``expr``."""
    text = _GROUPING.sub(" ", re.sub(r"\[[^\]]*\]", " ", expr))
    found = []
    for m in _SELECTOR.finditer(text):
        name, braces, call = m.groups()
        if not name and not braces:
            continue
        assert name, f"a selector without a metric name in {expr!r}"
        if call or name in _KEYWORDS:
            assert not braces, expr
            continue
        matchers = []
        if braces:
            inner = braces[1:-1]
            matchers = _MATCHER.findall(inner)
            assert "".join(x.group(0) for x in _MATCHER.finditer(inner)).strip() == \
                inner.strip(), f"matchers not understood: {braces}"
        found.append((name, matchers))
    assert '"' not in _SELECTOR.sub("", text), f"a string outside a matcher in {expr!r}"
    return found


def all_expressions() -> list[str]:
    out = []
    for expr in expressions(dashboard()):
        for var, value in GRAFANA.items():
            expr = expr.replace(var, value)
        out.append(expr)
    return out + [expression(a, "corral") for a in ALERTS]


def test_every_expression_names_only_what_corral_exposes() -> None:
    have = exposition()
    exprs = all_expressions()
    assert len(exprs) > 30
    seen = set()
    for expr in exprs:
        chosen = selectors(expr)
        assert chosen, expr
        for name, matchers in chosen:
            assert name in have, f"{name} (in {expr!r}) is not in corral's exposition"
            seen.add(name)
            for label, op, value in matchers:
                if label == "job":  # Prometheus' own label of the target
                    continue
                values = {s.get(label) for s in have[name]}
                assert values != {None}, f"{name} has no label {label} (in {expr!r})"
                if op == "=":
                    assert value in values, f'{name}{{{label}="{value}"}} never exposed'
                elif op == "=~" and value != ".*":
                    assert all(v in values for v in value.split("|")), (name, value)
    instance_families = {n for n in have if n.startswith("corral_instance_")}
    assert instance_families <= seen, f"shown nowhere: {instance_families - seen}"
    assert "corral_log_lines_total" in seen and "corral_instance_scrape_up" in seen


@needs_promtool
def test_every_expression_parses(tmp_path: Path) -> None:
    """promtool's PromQL parser over each expression, as recording rules of one file."""
    rules = [{"record": f"corral:check:{i}", "expr": e} for i, e in enumerate(all_expressions())]
    path = tmp_path / "exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def export(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "obs"
    assert main(["observability", "export", "--out", str(out), *args]) == 0
    return out


@needs_promtool
def test_the_exported_rules_pass_promtool_check(tmp_path: Path) -> None:
    out = export(tmp_path, "--target", "127.0.0.1:9464")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".corral-export", DASHBOARD, RULES, SCRAPE])
    done = subprocess.run(["promtool", "check", "rules", str(out / RULES)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout
    # the scrape job, with the rules, in a whole Prometheus config: promtool checks it too
    config = yaml.safe_load((out / SCRAPE).read_text())
    job = config["scrape_configs"][0]
    assert job["honor_labels"] is True and job["static_configs"][0]["targets"] == [
        "127.0.0.1:9464"]
    config["rule_files"] = [str(out / RULES)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    board = json.loads((out / DASHBOARD).read_text())
    assert board["uid"] == "corral-fleet" and len(expressions(board)) > 25


def test_export_refuses_a_directory_of_other_files(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "obs"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["observability", "export", "--out", str(other)]) == 1  # as corral export
    assert "--force" in capsys.readouterr().err
    export(tmp_path, "--force")
    assert (other / "notes.txt").read_text() == "mine" and (other / RULES).exists()
    export(tmp_path)  # its own export again: written over
    assert main(["observability", "export", "--out", "-"]) == 0
    assert "# file: corral-alerts.yml" in capsys.readouterr().out


# --- promtool test rules: synthetic series for every alert ---------------------------------

WEB = 'job="corral",agent="web",instance="web.1"'
HEALTHY_SERIES = [
    (f"corral_instance_restarts_total{{{WEB}}}", "0x70"),
    (f'corral_instance_state{{{WEB},state="backoff"}}', "0x70"),
    (f'corral_instance_state{{{WEB},state="fatal"}}', "0x70"),
    (f"corral_instance_oom_killed{{{WEB}}}", "0x70"),
    (f"corral_instance_healthy{{{WEB}}}", "1x70"),
    (f'corral_log_lines_total{{{WEB},level="error"}}', "0+6x70"),  # 0.1 a second
    (f"corral_instance_scrape_up{{{WEB}}}", "1x70"),
    ('corral_supervisor_uptime_seconds{job="corral",instance="127.0.0.1:9464"}', "0+60x70"),
]
WEB_LABELS = {"job": "corral", "agent": "web", "instance": "web.1"}
# alert -> (its failure's series, when it is evaluated, the labels it fires with)
FAILING: dict[str, tuple[list[tuple[str, str]], str, dict[str, str]]] = {
    "CorralCrashLoop": ([(f"corral_instance_restarts_total{{{WEB}}}", "0 1 2 3 4 5"),
                         (f'corral_instance_state{{{WEB},state="backoff"}}', "0 1 0 1 0 1")],
                        "5m", WEB_LABELS),
    "CorralInstanceFatal": ([(f'corral_instance_state{{{WEB},state="fatal"}}', "0 1 1")], "2m",
                            {**WEB_LABELS, "state": "fatal"}),
    "CorralInstanceOOMKilled": ([(f"corral_instance_oom_killed{{{WEB}}}", "1x3")], "1m",
                                WEB_LABELS),
    "CorralProbeFailing": ([(f"corral_instance_healthy{{{WEB}}}", "1 0 0 0 0 0")], "4m",
                           WEB_LABELS),
    "CorralRestartRate": ([(f"corral_instance_restarts_total{{{WEB}}}", "0+1x40")], "40m",
                          WEB_LABELS),
    "CorralLogErrorRate": ([(f'corral_log_lines_total{{{WEB},level="error"}}', "0+300x20")],
                           "15m", {"job": "corral", "agent": "web"}),
    "CorralAgentScrapeFailing": ([(f"corral_instance_scrape_up{{{WEB}}}", "1 0 0 0 0")], "4m",
                                 WEB_LABELS),
    "CorralDaemonDown": ([('corral_supervisor_uptime_seconds{job="corral",'
                           'instance="127.0.0.1:9464"}', "0 60 120")], "12m", {"job": "corral"}),
}


def _summary(name: str, labels: dict[str, str]) -> str:
    alert = next(a for a in ALERTS if a.name == name)
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], alert.summary)


def _series(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"series": s, "values": v} for s, v in pairs]


@needs_promtool
def test_every_alert_fires_on_its_failure_and_none_on_a_healthy_fleet(tmp_path: Path) -> None:
    assert set(FAILING) == {a.name for a in ALERTS}
    assert ERROR_RATE < 5 and ERROR_RATE > 0.1  # the series above sit on either side of it
    out = export(tmp_path, "--job", "corral")
    severity = {a.name: a.severity for a in ALERTS}
    tests: list[dict[str, Any]] = []
    for name, (series, at, labels) in FAILING.items():
        tests.append({"interval": "1m", "input_series": _series(series), "alert_rule_test": [{
            "eval_time": at, "alertname": name, "exp_alerts": [{
                "exp_labels": {**labels, "severity": severity[name]},
                "exp_annotations": {"summary": _summary(name, labels)}}]}]})
    tests.append({"interval": "1m", "input_series": _series(HEALTHY_SERIES),
                  "alert_rule_test": [{"eval_time": at, "alertname": a.name, "exp_alerts": []}
                                      for a in ALERTS for at in ("5m", "30m", "69m")]})
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(out / RULES)],
                                    "evaluation_interval": "1m", "tests": tests}))
    done = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_the_scrape_job_targets_the_manifest_s_metrics_port(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "corral.yaml"
    manifest.write_text("name: shop\nmetrics: {port: 9464}\nagents:\n  a: {command: sleep 1}\n")
    out = tmp_path / "obs"
    assert main(["-f", str(manifest), "observability", "export", "--out", str(out)]) == 0
    job = yaml.safe_load((out / SCRAPE).read_text())["scrape_configs"][0]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9464"]
    assert "NOTE" not in capsys.readouterr().err
    manifest.write_text("name: shop\nagents:\n  a: {command: sleep 1}\n")  # no metrics port
    assert main(["-f", str(manifest), "observability", "export", "--out", str(out)]) == 0
    assert "give corral a metrics port" in capsys.readouterr().err
