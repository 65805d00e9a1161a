"""The compose-to-corral mapping, key by key, and the schema check."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from corral.convert.imports import compose, compose_map
from corral.convert.report import Report
from corral.errors import CorralError
from corral.manifest.loader import load


def _args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(profile=kw.get("profile", []), name=kw.get("name"))


def _convert(tmp_path: Path, text: str, **kw: object) -> tuple[dict, Report]:
    src = tmp_path / "compose.yaml"
    src.write_text(text)
    out, report = compose.convert(str(src), _args(**kw))
    (tmp_path / "corral.yaml").write_text(out)
    assert out.startswith("# Imported from compose.yaml")
    return yaml.safe_load(out), report


def test_healthcheck_forms() -> None:
    r = Report("t")
    assert compose_map.probe({"test": ["CMD", "pg_isready"], "interval": "5s",
                              "retries": 4, "start_period": "2s"}, "a", r) == {
        "exec": {"command": ["pg_isready"]}, "period": "5s", "failure_threshold": 4,
        "initial_delay": "2s"}
    assert compose_map.probe({"test": "curl -f x"}, "a", r) == {
        "exec": {"command": ["/bin/sh", "-c", "curl -f x"]}}
    assert compose_map.probe({"test": ["NONE"]}, "a", r) is None
    assert compose_map.probe({"test": ["CMD"], "disable": True}, "a", r) is None


def test_depends_on_conditions() -> None:
    r = Report("t")
    got = compose_map.depends({"db": {"condition": "service_healthy", "restart": True},
                               "seed": {"condition": "service_completed_successfully",
                                        "required": False}, "x": {}}, "a", r)
    assert got == {"db": {"condition": "healthy", "restart": True},
                   "seed": {"condition": "completed_successfully", "required": False},
                   "x": {}}
    assert compose_map.depends(["db"], "a", r) == {"db": {}}


def test_env_and_env_file_forms() -> None:
    assert compose_map.environment(["A=1", "B="]) == {"A": "1", "B": ""}
    assert compose_map.environment({"A": 1, "B": None}) == {"A": "1"}  # B: from the shell
    assert compose_map.passed_through({"A": 1, "B": None}) == ["B"]
    assert compose_map.env_files([".env", {"path": "x.env", "required": False}]) == [
        ".env", {"path": "x.env", "required": False}]
    assert compose_map.env_files("a.env") == ["a.env"]


def test_volumes_short_long_named_anonymous() -> None:
    r = Report("t")
    got = compose_map.volumes(["data:/d", "./c:/c:ro", "/anon",
                               {"type": "bind", "source": "./s", "target": "/s",
                                "read_only": True}, {"type": "tmpfs", "target": "/t"}],
                              {"data"}, "a", r)
    assert got == [{"source": "data", "target": "/d", "named": True},
                   {"source": "./c", "target": "/c", "read_only": True},
                   {"source": "./s", "target": "/s", "read_only": True}]
    assert {x.field for x in r.losses} == {"volumes[2]", "volumes[4]"}


def test_whole_file_loads_and_reports(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "pw").write_text("s3cret\n")
    data, report = _convert(tmp_path, """
services:
  web:
    build: {context: ./web, dockerfile: Dockerfile.dev}
    command: ["python", "app.py"]
    ports: ["127.0.0.1:${PORT:-8000}:8000/tcp"]
    environment: [MODE=prod]
    secrets: [{source: pw, target: pw.txt}]
    restart: on-failure:3
    user: "1000"
    network_mode: host
    scale: 3
    privileged: true
  dbg:
    image: busybox
    command: sh
    profiles: [debug]
secrets:
  pw: {file: ./pw}
""")
    web = data["agents"]["web"]
    assert web["isolation"] == "container"
    assert web["workdir"] == "./web"  # the context: `isolation: venv` runs there as is
    assert web["container"] == {"build": ".", "file": "Dockerfile.dev",
                                "ports": ["${PORT:-8000}:8000"]}
    assert web["replicas"] == 3 and web["network"] == "host" and web["restart"] == "on-failure:3"
    assert "dbg" not in data["agents"]
    fields = {(x.agent, x.field, x.outcome) for x in report.losses}
    assert ("web", "privileged", "dropped") in fields
    assert ("web", "user", "dropped") in fields
    assert ("dbg", "profiles", "dropped") in fields
    manifest = load(tmp_path / "corral.yaml", environ={})
    assert manifest.agents["web"].restart.max_restarts == 3
    assert manifest.agents["web"].secrets[0].target == "pw.txt"


def test_profile_keeps_service(tmp_path: Path) -> None:
    data, _ = _convert(tmp_path, "services:\n  dbg: {image: busybox, command: sh, "
                       "profiles: [debug]}\n", profile=["debug"])
    assert "dbg" in data["agents"]


def test_schema_error_names_path(tmp_path: Path) -> None:
    with pytest.raises(CorralError, match=r"services\.web\.ports\[0\]"):
        _convert(tmp_path, "services:\n  web: {image: x, ports: [{bogus: 1}]}\n")


def test_broken_yaml_and_missing(tmp_path: Path) -> None:
    with pytest.raises(CorralError, match="not valid YAML"):
        _convert(tmp_path, "services: [\n")
    with pytest.raises(CorralError, match="no such file"):
        compose.find(str(tmp_path / "nope.yml"))


def test_loader_names_compose_file(tmp_path: Path) -> None:
    f = tmp_path / "docker-compose.yml"
    f.write_text("services:\n  web: {image: x}\n")
    with pytest.raises(CorralError, match=r"a compose file, not a corral manifest.*"
                                         r"corral import compose"):
        load(f, environ={})


def test_what_names_a_left_out_service_or_an_external_secret_goes_with_a_report_line(
        tmp_path: Path) -> None:
    doc, report = _convert(tmp_path, """\
services:
  web.front:
    image: nginx
    command: nginx -g 'daemon off;'
    depends_on: [db, cache]
    secrets: [key, token]
    ports: ["8080:80", "8080:80/udp", "9090:90/tcp", "9090:90"]
  cache:
    image: redis
    command: redis-server
  db:
    image: postgres
    command: postgres
    profiles: [full]
secrets:
  key: {file: ./key.txt}
  token: {external: true}
""")
    (tmp_path / "key.txt").write_text("k")
    web = doc["agents"]["web-front"]
    assert web["depends_on"] == {"cache": {}}
    assert web["secrets"] == ["key"]
    assert web["container"]["ports"] == ["8080:80", "9090:90"]
    dropped = {(x.agent, x.field) for x in report.losses if x.outcome == "dropped"}
    assert {("web.front", "depends_on.db"), ("web.front", "secrets.token"),
            ("web.front", "ports[1]"), ("web.front", "ports[3]"), ("db", "profiles"),
            (None, "secrets.token")} <= dropped
    assert any(x.field == "name" and "'web-front'" in x.reason for x in report.losses)
    manifest = load(str(tmp_path / "corral.yaml"))
    assert list(manifest.agents) == ["web-front", "cache"]


def test_a_service_without_a_command_runs_its_images_own(tmp_path: Path) -> None:
    """No placeholder: the agent gives no command, and its image's CMD runs (as compose)."""
    data, report = _convert(tmp_path, "services:\n  cache: {image: redis:7}\n  web: {build: "
                            "., entrypoint: [python3, -m], command: [http.server]}\n")
    assert "command" not in data["agents"]["cache"]
    assert not [x for x in report.losses if x.agent == "cache"]
    manifest = load(tmp_path / "corral.yaml", environ={})
    assert manifest.agents["cache"].argv == []
    assert manifest.agents["web"].argv == ["python3", "-m", "http.server"]
    lines = [(x.field, x.outcome) for x in report.losses if x.agent == "web"]
    assert ("entrypoint", "changed") in lines  # the image's own ENTRYPOINT still runs first


def test_a_built_service_flips_to_venv_with_one_word(tmp_path: Path) -> None:
    """The build context is the agent's workdir: `isolation: venv` then finds its
    requirements and runs its command there, the container block left as it was."""
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "requirements.txt").write_text("flask\n")
    _convert(tmp_path, "services:\n  web: {build: ./web, command: python app.py}\n"
             "  remote: {build: 'https://github.com/x/y.git#main', command: run}\n")
    text = (tmp_path / "corral.yaml").read_text()
    assert text.count("    isolation: container") == 2
    (tmp_path / "corral.yaml").write_text(text.replace("    isolation: container",
                                                       "    isolation: venv", 1))
    web = load(tmp_path / "corral.yaml", environ={}).agents["web"]
    assert web.isolation == "venv" and web.workdir == str(tmp_path / "web")
    assert web.options["venv"].requirements == str(tmp_path / "web" / "requirements.txt")


def test_a_remote_build_context_is_reported_not_taken_for_a_directory(tmp_path: Path) -> None:
    data, report = _convert(tmp_path, "services:\n  remote: {build: "
                            "'https://github.com/x/y.git#main', command: run}\n")
    assert "workdir" not in data["agents"]["remote"]
    assert [(x.field, x.outcome) for x in report.for_agent("remote")] == [("build", "dropped")]


def test_extends_merges_the_base_service_of_this_file_or_another(tmp_path: Path) -> None:
    """As compose merges them: mappings key by key, command replaced, ports appended,
    volumes by target; a base from another directory has its paths made relative here."""
    (tmp_path / "base" / "app").mkdir(parents=True)
    (tmp_path / "base" / "common.yaml").write_text("""
services:
  web:
    build: ./app
    command: [serve, --old]
    environment: {A: "1", B: "2"}
    ports: ["8000:8000"]
    volumes: ["./data:/data", "./conf:/conf:ro"]
    healthcheck: {test: [CMD, probe], interval: 5s}
""")
    data, report = _convert(tmp_path, """
services:
  web:
    extends: {file: base/common.yaml, service: web}
    command: [serve, --new]
    environment: [B=3, C=4]
    ports: ["9000:9000"]
    volumes: ["./mine:/conf"]
    healthcheck: {interval: 2s}
  worker:
    extends: web
    command: [work]
""")
    web, worker = data["agents"]["web"], data["agents"]["worker"]
    assert web["workdir"] == "./base/app" and web["command"] == ["serve", "--new"]
    assert web["env"] == {"A": "1", "B": "3", "C": "4"}
    assert web["container"]["ports"] == ["8000:8000", "9000:9000"]
    assert [(v["source"], v["target"]) if isinstance(v, dict) else v
            for v in web["volumes"]] == [("./base/data", "/data"), ("./mine", "/conf")]
    assert web["readiness"]["exec"]["command"] == ["probe"]
    assert web["readiness"]["period"] == "2s"
    assert worker["command"] == ["work"] and worker["env"] == web["env"]
    assert ("web", "extends", "changed") in {(x.agent, x.field, x.outcome)
                                             for x in report.losses}
    load(tmp_path / "corral.yaml", environ={})


@pytest.mark.parametrize(("text", "problem"), [
    ("services:\n  a: {extends: b}\n  b: {extends: a}\n", "extends itself"),
    ("services:\n  a: {extends: {file: nope.yaml, service: x}}\n", "no file nope.yaml"),
    ("services:\n  a: {extends: zz, image: i}\n", "has no service 'zz'"),
])
def test_an_extends_that_cannot_resolve_is_one_line(tmp_path: Path, text: str,
                                                     problem: str) -> None:
    with pytest.raises(CorralError, match=problem):
        _convert(tmp_path, text)


def test_a_variable_without_a_value_is_passed_from_the_shell_both_ways(tmp_path: Path) -> None:
    """compose's ``- KEY`` / ``KEY:`` is corral's ``inherit_env``, and back."""
    from corral.convert.base import ExportOptions
    from corral.convert.export.compose import ComposeExporter

    data, report = _convert(tmp_path, "services:\n  a: {image: i, environment: [A=1, "
                            "TOKEN]}\n  b: {image: i, environment: {B: '2', HOME_DIR: null}, "
                            "labels: [tier]}\n")
    assert data["agents"]["a"]["env"] == {"A": "1"}
    assert data["agents"]["a"]["inherit_env"] == ["TOKEN"]
    assert data["agents"]["b"]["inherit_env"] == ["HOME_DIR"]
    assert data["agents"]["b"]["labels"] == {"tier": ""}
    assert not report.losses
    m = load(tmp_path / "corral.yaml", environ={})
    bundle = ComposeExporter().export(m, ExportOptions())
    out = yaml.safe_load(bundle.files["compose.yaml"])
    assert out["services"]["a"]["environment"] == {"A": "1", "TOKEN": None}


def test_what_a_volume_or_a_limit_says_beyond_corral_is_reported(tmp_path: Path) -> None:
    data, report = _convert(tmp_path, """
services:
  a:
    image: i
    volumes: ["./d:/d:ro,z", {type: bind, source: ./e, target: /e, bind: {propagation: rslave}}]
    deploy: {resources: {limits: {cpus: "${CPUS:-0.5}"}}}
""")
    fields = {x.field for x in report.for_agent("a")}
    assert {"volumes[0]", "volumes[1].bind"} <= fields
    assert data["agents"]["a"]["resources"]["cpus"] == "${CPUS:-0.5}"
    assert load(tmp_path / "corral.yaml", environ={}).agents["a"].resources.cpus == 0.5
