"""``corral import compose`` and ``corral export compose`` through the real CLI, the export
checked by the real docker-compose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.validate_compose import check_compose

pytestmark = pytest.mark.e2e
SRC = str(Path(__file__).resolve().parents[2] / "src")
COMPOSE = """\
services:
  web:
    image: nginx:1.27
    command: ["nginx", "-g", "daemon off;"]
    ports: ["${WEB_PORT:-18080}:80"]
    healthcheck: {test: ["CMD", "true"], interval: 2s}
    networks: [front]
  worker:
    build: ./worker
    command: python work.py
    depends_on: {web: {condition: service_healthy}}
networks:
  front: {}
"""


def corral(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "corral.cli.main", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": SRC})


@pytest.fixture
def src(tmp_path: Path) -> Path:
    (tmp_path / "worker").mkdir()
    (tmp_path / "docker-compose.yml").write_text(COMPOSE)
    return tmp_path


def test_import_then_config_then_export(src: Path) -> None:
    done = corral(src, "import", "compose")
    assert done.returncode == 0, done.stderr
    assert "dropped  networks:" in done.stderr and "(fleet):" in done.stderr
    text = (src / "corral.yaml").read_text()
    assert "${WEB_PORT:-18080}:80" in text  # interpolation deferred to corral's loader
    assert corral(src, "config").returncode == 0
    out = corral(src, "export", "compose", "--out", "out", "--report", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["kind"] == "export compose"
    check_compose(src / "out")


def test_report_json(src: Path) -> None:
    done = corral(src, "import", "compose", "docker-compose.yml", "--report", "json")
    assert done.returncode == 0, done.stderr
    losses = json.loads(done.stdout)["losses"]
    assert {"agent": "web", "field": "networks", "outcome": "dropped"}.items() <= losses[0].items()


@pytest.mark.parametrize(("text", "needle"), [
    ("services: [\n", "is not valid YAML"),
    ("services:\n  web: {image: x, restart: 5}\n", "services.web.restart"),
])
def test_bad_input_is_one_line(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "compose.yaml").write_text(text)
    done = corral(tmp_path, "import", "compose")
    assert done.returncode != 0 and needle in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_missing_file_and_existing_output(src: Path) -> None:
    missing = corral(src, "import", "compose", "nope.yml")
    assert missing.returncode != 0 and "nope.yml: no such file" in missing.stderr
    assert corral(src, "import", "compose").returncode == 0
    again = corral(src, "import", "compose")
    assert again.returncode != 0 and "--force" in again.stderr
    assert corral(src, "import", "compose", "--force").returncode == 0


def test_config_on_a_compose_file_says_import(src: Path) -> None:
    done = corral(src, "-f", "docker-compose.yml", "config")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "a compose file, not a corral manifest" in done.stderr
    assert "corral import compose" in done.stderr
