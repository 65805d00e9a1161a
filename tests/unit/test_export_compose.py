"""The corral-to-compose mapping, checked by the real docker-compose, and the round trip."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import yaml

from corral.convert import output
from corral.convert.base import ExportOptions
from corral.convert.export.compose import ComposeExporter
from corral.convert.imports import compose
from corral.manifest.loader import load
from tests.support.validate_compose import check_compose

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "corral.yaml"

EVERY_KEY = """\
name: every
services:
  db:
    image: postgres:16
    command: ["postgres", "-c", "fsync=off"]
    environment: {POSTGRES_PASSWORD_FILE: /run/secrets/pw}
    secrets: [pw]
    volumes: ["data:/var/lib/postgresql/data", "./init:/init:ro"]
    healthcheck: {test: ["CMD", "pg_isready"], interval: 5s, timeout: 2s, retries: 4,
                  start_period: 3s}
    restart: unless-stopped
    stop_signal: SIGINT
    stop_grace_period: 20s
    labels: {tier: data}
  web:
    build: ./web
    command: ["python", "app.py"]
    ports: ["18000:8000"]
    depends_on: {db: {condition: service_healthy}}
    deploy:
      replicas: 2
      resources: {limits: {cpus: "0.5", memory: 256M, pids: 50}, reservations: {memory: 64M}}
    restart: always
  cache:
    image: redis:7
    depends_on: [db]
volumes:
  data: {}
secrets:
  pw: {file: ./pw}
"""


SMALL = """\
services:
  api:
    image: python:3.12-slim
    entrypoint: ["python3"]
    command: ["-m", "http.server", "8000"]
    environment: ["MODE=prod", "LEVEL=3"]
    restart: on-failure:3
    healthcheck: {test: ["CMD", "python3", "-c", "print(1)"], retries: 2}
  job:
    image: busybox:1.36
    command: sh -c 'echo done'
    restart: "no"
    depends_on: [api]
"""


def _project(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Containerfile").write_text("FROM python:3.12-slim\n")
    (tmp_path / "init").mkdir()
    (tmp_path / "pw").write_text("x\n")


def _export(manifest_path: Path, out: Path) -> dict:
    manifest = load(manifest_path, environ={})
    bundle = ComposeExporter().export(manifest, ExportOptions(out_dir=str(out)))
    output.write(bundle, str(out), kind="export compose", force=True)
    check_compose(out)
    return yaml.safe_load((out / "compose.yaml").read_text())


def _import(src: Path) -> str:
    text, _ = compose.convert(str(src), argparse.Namespace(profile=[], name="every"))
    return text.split("\n", 2)[2]  # without the header naming the source


def test_quickstart_exports_and_validates(tmp_path: Path) -> None:
    doc = _export(QUICKSTART, tmp_path / "out")
    worker = doc["services"]["worker"]
    assert worker["scale"] == 2
    # compose reads dockerfile relative to the context, the context relative to the file
    build = tmp_path / "out" / worker["build"]["context"]
    assert (build / worker["build"]["dockerfile"]).is_file()
    assert doc["services"]["seed"]["depends_on"] == {"cache": {"condition": "service_healthy"}}


@pytest.mark.parametrize("text", [EVERY_KEY, SMALL], ids=["every-key", "small"])
def test_round_trip(tmp_path: Path, text: str) -> None:
    _project(tmp_path)
    (tmp_path / "compose.yaml").write_text(text)
    first = _import(tmp_path / "compose.yaml")
    (tmp_path / "corral.yaml").write_text(first)
    _export(tmp_path / "corral.yaml", tmp_path / "out")
    second = _import(tmp_path / "out" / "compose.yaml")
    a, b = yaml.safe_load(first), yaml.safe_load(second)
    x, y = load_agents(a, tmp_path), load_agents(b, tmp_path / "out")
    assert {n: _diff(x[n], y[n]) for n in x} == {n: [] for n in x}


def load_agents(doc: dict, root: Path) -> dict:
    """A manifest loaded from the directory of the file it was imported from (the export
    names host paths relative to its compose file, as compose resolves them); a named
    volume by its name (each file's state dir holds its own)."""
    import dataclasses

    f = root / "cmp.yaml"
    f.write_text(yaml.safe_dump(doc))
    agents = dict(load(f, environ={}).agents)
    for name, agent in agents.items():
        volumes = [dataclasses.replace(v, source=os.path.basename(v.source)) if v.named else v
                   for v in agent.volumes]
        options = dict(agent.options)
        box = options.get("container")
        if box is not None and box.build is not None:  # relative to the workdir: resolved
            options["container"] = dataclasses.replace(
                box, build=os.path.normpath(os.path.join(agent.workdir, box.build)))
        # a container agent's workdir is its file's dir, only the base of its build
        agents[name] = dataclasses.replace(agent, volumes=volumes, options=options,
                                           workdir=".")
    return agents


def _diff(a: object, b: object) -> list[str]:
    import dataclasses
    return [f"{f.name}: {getattr(a, f.name)!r} != {getattr(b, f.name)!r}"
            for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)]


def test_tcp_readiness_secret_env_and_own_fields(tmp_path: Path) -> None:
    (tmp_path / "corral.yaml").write_text("""\
name: t
logs: {max_size: 1M}
secrets:
  token: {environment: TOKEN}
agents:
  api:
    description: the api
    class: service
    command: python3 -m http.server 8000
    readiness: {tcp: 8000, period: 2s}
    liveness: {silence: 30s}
    secrets: [{source: token, env: TOKEN}]
    resources: {memory: 1G, memory_high: 512M}
""")
    doc = _export(tmp_path / "corral.yaml", tmp_path / "out")
    api = doc["services"]["api"]
    assert api["healthcheck"]["test"] == ["CMD-SHELL", "exec 3<>/dev/tcp/127.0.0.1/8000"]
    assert api["deploy"]["resources"]["limits"]["memory"] == "1024M"
    assert doc["secrets"] == {"token": {"file": "./secrets/token"}}
    manifest = load(tmp_path / "corral.yaml", environ={})
    bundle = ComposeExporter().export(manifest, ExportOptions())
    fields = {(x.agent, x.field, x.outcome) for x in bundle.report.losses}
    assert {("api", "liveness", "dropped"), ("api", "description", "dropped"),
            ("api", "class", "dropped"), ("api", "resources.memory_high", "dropped"),
            ("api", "secrets.token", "changed"), (None, "secrets.token", "changed"),
            ("api", "isolation", "changed"), (None, "logs", "dropped")} <= fields


def test_a_literal_dollar_is_written_so_compose_keeps_it_and_comes_back(
        tmp_path: Path) -> None:
    (tmp_path / "corral.yaml").write_text(
        "name: d\nagents:\n  web:\n    isolation: container\n    command: [echo, '$$HOME']\n"
        "    container: {image: busybox:1.36}\n    env: {PASSWORD_HASH: 'pbkdf2$$x$$y'}\n")
    doc = _export(tmp_path / "corral.yaml", tmp_path / "out")
    assert doc["services"]["web"]["environment"] == {"PASSWORD_HASH": "pbkdf2$$x$$y"}
    assert doc["services"]["web"]["command"] == ["echo", "$$HOME"]
    back = tmp_path / "back"
    back.mkdir()
    (back / "corral.yaml").write_text(_import(tmp_path / "out" / "compose.yaml"))
    agent = load(back / "corral.yaml", environ={}).agents["web"]
    assert agent.env["PASSWORD_HASH"] == "pbkdf2$x$y" and agent.command == ["echo", "$HOME"]


def test_gpus_become_a_device_reservation_of_whole_gpus(tmp_path: Path) -> None:
    """``resources.gpus`` is compose's nvidia device request (``deploy.resources.reservations
    .devices``), rounded up to whole GPUs (said in the report); systemd has no GPU share and
    says it dropped it."""
    from corral.convert.export.systemd import SystemdExporter

    (tmp_path / "corral.yaml").write_text(
        "name: g\nagents:\n  train:\n    command: python3 train.py\n    placement: ray\n"
        "    resources: {gpus: 0.5}\n")
    doc = _export(tmp_path / "corral.yaml", tmp_path / "out")
    assert doc["services"]["train"]["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    manifest = load(tmp_path / "corral.yaml", environ={})
    losses = {(x.agent, x.field, x.outcome)
              for x in ComposeExporter().export(manifest, ExportOptions()).report.losses}
    assert ("train", "resources.gpus", "changed") in losses
    losses = {(x.agent, x.field, x.outcome)
              for x in SystemdExporter().export(manifest, ExportOptions()).report.losses}
    assert ("train", "resources.gpus", "dropped") in losses
