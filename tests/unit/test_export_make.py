"""The make export as text and as make reads it (``make -n``, ``make -q``): targets in
dependency order, readiness waits, the venv stamp's prerequisites, variables quoted, and the
report of what make cannot be. The real run through make is in tests/e2e/test_make_export.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from corral.convert.base import ExportOptions
from corral.convert.export.make import MakeExporter
from corral.convert.output import write
from corral.manifest.loader import load
from tests.support.validate_make import check_make

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

FLEET = """\
    name: shop
    secrets:
      token: {environment: SHOP_TOKEN}
      key: {file: key.txt}
      cmd: {command: echo hi}
    agents:
      db:
        command: python3 db.py
        env: {GREETING: "it's $$HOME and \\"quoted\\"", MULTI: "a\\nb"}
        readiness: {tcp: 5432, period: 0.5, initial_delay: 1s}
        stop: {signal: SIGINT, timeout: 3s}
      api:
        isolation: venv
        workdir: api
        command: python app.py
        replicas: 2
        inherit_env: [LANG, AWS_*]
        secrets: [{source: token, env: TOKEN}, {source: key, env: KEY}, {source: cmd, env: C},
                  {source: token}]
        readiness: {http: {port: 8080, path: /health}}
        liveness: {exec: "true"}
        resources: {memory: 64M}
        depends_on: {db: {condition: healthy}, migrate: {condition: completed_successfully}}
      migrate:
        command: python3 migrate.py
        restart: "no"
        depends_on: [db]
      nightly:
        command: python3 nightly.py
        schedule: {cron: "0 3 * * *"}
    """


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    (tmp_path / "corral.yaml").write_text(textwrap.dedent(FLEET))
    (tmp_path / "key.txt").write_text("k\n")
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "base.txt").write_text("# nothing\n")
    (tmp_path / "api" / "requirements.txt").write_text("-r base.txt\n")
    return tmp_path


def _export(project: Path, out: Path) -> tuple[str, list[tuple[str | None, str, str]]]:
    bundle = MakeExporter().export(load(project / "corral.yaml"), ExportOptions())
    write(bundle, str(out), kind="export make")
    losses = [(x.agent, x.field, x.outcome) for x in bundle.report.losses]
    return bundle.files["Makefile"], losses


def test_targets_follow_the_dependencies_and_wait_for_readiness(shop: Path, tmp_path: Path
                                                                ) -> None:
    makefile, _ = _export(shop, tmp_path / "out")
    rules = {line.split(":")[0]: line for line in makefile.splitlines()
             if line.startswith(("up-", "up:"))}
    assert "up-api: $(STATE)/venv/api/.stamp up-db done-migrate ##" in rules["up-api"]
    assert rules["up-migrate"].startswith("up-migrate: up-db ##")
    # a scheduled agent without run_on_start is not part of up
    assert rules["up"].startswith("up: up-db up-migrate up-api ##")
    assert "up-nightly" not in rules["up"]
    assert "$(RUN) ready db.1" in makefile and " tcp 127.0.0.1 5432" in makefile
    assert " 1 0.5 1 1 tcp" in makefile  # initial delay, period, timeout, successes
    assert "http http://127.0.0.1:8080/health 200 201" in makefile
    assert "$(RUN) start api.1" in makefile and "$(RUN) start api.2" in makefile
    assert "$(RUN) stop db.1 SIGINT 3" in makefile
    down = makefile.split("\ndown:", 1)[1].split("\n\n", 1)[0]
    assert down.index("down-api") < down.index("down-migrate") < down.index("down-db")


def test_the_report_names_what_make_cannot_carry(shop: Path, tmp_path: Path) -> None:
    _, losses = _export(shop, tmp_path / "out")
    for loss in [("api", "liveness", "dropped"), ("api", "resources", "dropped"),
                 ("api", "secrets[2]", "dropped"), ("api", "secrets[3]", "dropped"),
                 ("api", "inherit_env[AWS_*]", "changed"), ("nightly", "schedule", "dropped"),
                 ("migrate", "depends_on.db", "changed"), ("db", "restart", "dropped")]:
        assert loss in losses
    assert ("migrate", "restart", "dropped") not in losses  # restart no: a job, carried
    assert not any(a == "api" and f in ("secrets[0]", "secrets[1]") for a, f, _ in losses)


def test_variables_are_quoted_for_sh_and_secrets_are_never_written(shop: Path, tmp_path: Path
                                                                   ) -> None:
    makefile, _ = _export(shop, tmp_path / "out")
    script = (tmp_path / "out" / "env" / "db.sh").read_text()
    env = subprocess.run(["bash", "-c", f'set -a; . "{tmp_path}/out/env/db.sh"; '
                          'printf "%s|%s" "$GREETING" "$MULTI"'], capture_output=True,
                         text=True, check=True).stdout
    assert env == 'it\'s $HOME and "quoted"|a\nb'
    assert "CORRAL_ADDR_DB=127.0.0.1:5432" in (tmp_path / "out" / "env" / "api.sh").read_text()
    assert "PATH=" not in script  # make's own environment gives it
    assert "SECRETS='TOKEN=env:SHOP_TOKEN KEY=file:" in makefile
    assert "k\n" not in makefile and not any(p.read_text() == "k\n" for p in
                                             (tmp_path / "out" / "env").iterdir())
    assert os.access(tmp_path / "out" / "instance.sh", os.X_OK)


@needs_make
def test_make_reads_every_target(shop: Path, tmp_path: Path) -> None:
    _export(shop, tmp_path / "out")
    assert check_make(tmp_path / "out") == ["db", "migrate", "api", "nightly"]
    help_text = subprocess.run(["make", "-C", str(tmp_path / "out"), "--no-print-directory",
                                "help"], capture_output=True, text=True, check=True).stdout
    assert "up-api" in help_text and "start every agent" in help_text


@needs_make
def test_a_venv_is_rebuilt_only_when_its_requirements_change(shop: Path, tmp_path: Path
                                                              ) -> None:
    out, state = tmp_path / "out", tmp_path / "state"
    _export(shop, out)
    stamp = state / "venv" / "api" / ".stamp"

    def up_to_date() -> bool:
        proc = subprocess.run(["make", "-q", "-C", str(out), f"STATE={state}", str(stamp)],
                              capture_output=True, text=True)
        assert proc.returncode in (0, 1), proc.stderr
        return proc.returncode == 0

    assert not up_to_date()  # never built
    stamp.parent.mkdir(parents=True)
    stamp.touch()
    for name in ("requirements.txt", "base.txt"):
        os.utime(shop / "api" / name, (1_000_000, 1_000_000))
    assert up_to_date()
    os.utime(shop / "api" / "base.txt")  # an included file changed: rebuilt
    assert not up_to_date()
    dry = subprocess.run(["make", "-n", "-C", str(out), f"STATE={state}", str(stamp)],
                         capture_output=True, text=True, check=True).stdout
    assert "-m venv" in dry and "pip install" in dry and "requirements.txt" in dry


def test_a_vm_agent_gets_no_targets_and_is_reported(tmp_path: Path) -> None:
    (tmp_path / "corral.yaml").write_text(textwrap.dedent("""\
        name: v
        agents:
          a: {command: "true"}
        """))
    manifest = load(tmp_path / "corral.yaml")
    from dataclasses import replace

    vm = replace(manifest, agents={**manifest.agents, "g": replace(manifest.agents["a"],
                                                                   isolation="vm")})
    bundle = MakeExporter().export(vm, ExportOptions())
    assert "up-g:" not in bundle.files["Makefile"]
    assert [(x.agent, x.field, x.outcome) for x in bundle.report.losses
            if x.agent == "g"] == [("g", "isolation", "dropped")]


@needs_make
def test_container_agents_run_with_podman_run(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "requirements.txt").write_text("# none\n")
    (tmp_path / "corral.yaml").write_text(textwrap.dedent("""\
        name: ct
        agents:
          web:
            isolation: container
            container: {image: docker.io/library/nginx:alpine, ports: ["8080:80"]}
            command: nginx -g "daemon off;"
            volumes: ["./data:/data:ro", "cache:/cache"]
          app: {isolation: container, workdir: app, command: python app.py}
        """))
    bundle = MakeExporter().export(load(tmp_path / "corral.yaml"), ExportOptions())
    makefile = bundle.files["Makefile"]
    assert ("podman run --rm --init --sig-proxy=true -p 127.0.0.1:8080:80 -e CORRAL_INSTANCE"
            in makefile)
    assert '-v "$(PROJECT_DIR)/data:/data:ro" -v "ct-cache:/cache"' in makefile
    assert "docker.io/library/nginx:alpine nginx -g 'daemon off;'" in makefile
    assert ('podman build -q -t localhost/corral-ct-app:latest -f '
            '"$(HERE)/build/app/Containerfile" "$(PROJECT_DIR)/app"') in makefile
    assert "FROM" in bundle.files["build/app/Containerfile"]
    losses = {(x.agent, x.field) for x in bundle.report.losses}
    assert {("web", "volumes[/cache]"), ("web", "network"), ("app", "network")} <= losses
    write(bundle, str(tmp_path / "out"), kind="export make")
    assert check_make(tmp_path / "out") == ["web", "app"]
