"""``corral export systemd`` on a rich fleet: every unit verified by ``systemd-analyze
verify``, the cron converter checked against ``systemd-analyze calendar`` and cronsim, and
the report naming each field that did not carry."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from corral.convert import output
from corral.convert.base import ExportOptions
from corral.convert.export.systemd import SystemdExporter
from corral.convert.export.systemd.calendar import on_calendar
from corral.errors import CorralError, UsageError
from corral.manifest.loader import load
from tests.support.validate_systemd import check_systemd, exec_argv, systemd_analyze

RICH = """\
name: shop
secrets:
  token: {file: token.txt}
  dbpass: {file: db.txt}
  apikey: {environment: SHOP_API_KEY}
agents:
  db:
    command: python3 -c "import time; time.sleep(1e6)"
    readiness: {http: {port: 8080, path: /health}, period: 2s, success_threshold: 2}
    resources: {cpus: 1.5, memory: 512M, memory_reservation: 256M, memory_high: 400M, pids: 64}
    stop: {signal: SIGINT, timeout: 30s}
    volumes: ["dbdata:/var/lib/db"]
    restart: {policy: always, max_restarts: 5, window: 2m,
              backoff: {initial: 2s, factor: 2, max: 32s}}
    secrets: [{source: dbpass}]
  migrate:
    command: python3 -c "print('migrated')"
    restart: on-failure
    depends_on: {db: {condition: healthy}}
  api:
    command: python3 -c "import os; print(os.environ['TOKEN'])"
    replicas: 3
    env: {GREETING: "hello \\"world\\" 100% $$HOME"}
    env_file: [{path: api.env, required: false}]
    depends_on:
      migrate: {condition: completed_successfully}
      cache: {required: false}
    secrets: [{source: token, env: TOKEN}, {source: apikey}]
    liveness: {tcp: 9000}
  cache:
    isolation: sandbox
    network: loopback:shared
    command: python3 -c "print(1)"
  cache2:
    isolation: sandbox
    network: loopback:shared
    command: python3 -c "print(2)"
  web:
    isolation: container
    container: {image: docker.io/library/nginx:1.27}
    command: nginx -g "daemon off;"
    volumes: ["html:/usr/share/nginx/html:ro"]
    labels: {team: a}
  nightly:
    command: python3 -c "print('night')"
    schedule: {cron: "30 2 1,15 * sun", timezone: Europe/Paris, jitter: 5m, catch_up: true,
               overlap: queue}
"""


@pytest.fixture
def rich(tmp_path: Path) -> Path:
    (tmp_path / "corral.yaml").write_text(RICH)
    (tmp_path / "token.txt").write_text("t0ken\n")
    (tmp_path / "db.txt").write_text("pw\n")
    return tmp_path


def _export(project: Path, out: Path, **settings: str) -> dict[str, str]:
    bundle = SystemdExporter().export(load(project / "corral.yaml"),
                                      ExportOptions(settings=settings))
    output.write(bundle, str(out), kind="export systemd")
    return {**bundle.files, "report": bundle.report.as_text()}


def test_a_rich_fleet_exports_to_units_systemd_verifies(rich: Path, tmp_path: Path) -> None:
    files = _export(rich, tmp_path / "out", **{"systemd-version": "252"})
    check_systemd(str(tmp_path / "out"))
    db, api = files["units/shop-db@.service"], files["units/shop-api@.service"]
    for line in ("CPUQuota=150%", f"MemoryMax={512 << 20}", f"MemoryLow={256 << 20}",
                 f"MemoryHigh={400 << 20}", "TasksMax=64", "KillSignal=SIGINT",
                 "TimeoutStopSec=30s", "Restart=always", "RestartSec=2s",
                 "StartLimitBurst=6", "StartLimitIntervalSec=120s",
                 "StateDirectory=shop/dbdata", "BindPaths=/var/lib/shop/dbdata:/var/lib/db",
                 f"LoadCredential=dbpass:{rich}/db.txt",
                 'Environment="CORRAL_SECRETS_DIR=%d"'):
        assert line in db.splitlines(), line
    assert "RestartSteps" not in db
    assert "ExecStartPost=/usr/bin/python3 -c" in db and "http://127.0.0.1:8080/health" in db
    # migrate is awaited to complete: a oneshot that stays active once it exited 0
    migrate = files["units/shop-migrate@.service"]
    assert "Type=oneshot" in migrate and "RemainAfterExit=yes" in migrate
    assert "After=shop-db@1.service" in migrate and "Requires=shop-db@1.service" in migrate
    assert "Requires=shop-migrate@1.service" in api and "Wants=shop-cache@1.service" in api
    assert 'Environment="GREETING=hello \\"world\\" 100%% $HOME"' in api
    assert f"EnvironmentFile=-{rich}/api.env" in api
    target = files["units/shop.target"]
    assert [f"Wants=shop-api@{i}.service" for i in (1, 2, 3)] == [
        x for x in target.splitlines() if x.startswith("Wants=shop-api")]
    assert "Wants=shop-nightly@1.timer" in target and "shop-nightly@1.service" not in target
    cache = files["units/shop-cache@.service"]
    assert "ProtectSystem=strict" in cache and "PrivateNetwork=yes" in cache
    assert "JoinsNamespaceOf=shop-cache@1.service" in files["units/shop-cache2@.service"]
    assert ("ExecStart=/usr/bin/podman run --rm --replace --name shop-web-%i --env-host "
            "--volume shop-html:/usr/share/nginx/html:ro docker.io/library/nginx:1.27 nginx "
            '-g "daemon off;"') in files["units/shop-web@.service"]
    timer = files["units/shop-nightly@.timer"].splitlines()
    assert "OnCalendar=*-*-01,15 02:30:00 Europe/Paris" in timer
    assert "OnCalendar=Sun *-*-* 02:30:00 Europe/Paris" in timer
    assert {"RandomizedDelaySec=300s", "Persistent=yes"} <= set(timer)
    report = files["report"]
    for field in ("restart.backoff:", "liveness:", "secrets.apikey:", "schedule.overlap:",
                  "isolation: sandbox", "labels:"):
        assert field in report, field
    assert "install -m 0644" in files["install.sh"]


def test_a_newer_systemd_gets_the_backoff_curve(rich: Path, tmp_path: Path) -> None:
    files = _export(rich, tmp_path / "out", **{"systemd-version": "255"})
    db = files["units/shop-db@.service"].splitlines()
    assert "RestartSteps=4" in db and "RestartMaxDelaySec=32s" in db  # 2s * 2**4 = 32s
    assert "restart.backoff.factor" in files["report"]


def test_bad_settings_are_one_line_usage_errors(rich: Path) -> None:
    manifest = load(rich / "corral.yaml")
    with pytest.raises(UsageError, match="not a systemd version"):
        SystemdExporter().export(manifest, ExportOptions(settings={"systemd-version": "x"}))
    with pytest.raises(UsageError, match="not a systemd export setting"):
        SystemdExporter().export(manifest, ExportOptions(settings={"kustomize": "true"}))


def _secret_env_through_the_wrapper(api_unit: str, cred_dir: Path) -> str:
    """Runs the ExecStart= of the api unit as systemd would split it, with a credentials
    dir, to see the secret land in the variable."""
    line = next(x for x in api_unit.splitlines() if x.startswith("ExecStart="))
    argv = exec_argv(line[len("ExecStart="):])
    done = subprocess.run(argv, env={"CREDENTIALS_DIRECTORY": str(cred_dir),
                                     "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=True, timeout=60)
    return done.stdout


def test_an_env_secret_is_read_from_its_credential(rich: Path, tmp_path: Path) -> None:
    files = _export(rich, tmp_path / "out")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "token").write_text("t0ken\n")
    assert _secret_env_through_the_wrapper(files["units/shop-api@.service"], creds) == "t0ken\n"


CRONS = ["*/5 * * * *", "0 9 * * mon-fri", "30 2 1,15 * sun", "0 0 * jan-mar 5-7",
         "15 */6 * * *", "0 12 * * 1,3,5", "0 0 1 */3 *", "5-10/2 4 * * 7"]


@pytest.mark.parametrize("expr", CRONS)
def test_cron_becomes_calendar_events_systemd_reads_and_that_fire_when_cron_would(
        expr: str) -> None:
    from cronsim import CronSim

    events = on_calendar(expr, "UTC")
    check = subprocess.run([systemd_analyze(), "calendar", "--iterations=6", *events],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stderr
    start = datetime(2026, 1, 1, tzinfo=UTC)
    want = [next(it) for it in [CronSim(expr, start)] for _ in range(6)]
    got: list[datetime] = []
    for event in events:
        done = subprocess.run([systemd_analyze(), "calendar", "--iterations=6",
                               f"--base-time={start:%Y-%m-%d %H:%M:%S} UTC", event],
                              capture_output=True, text=True, timeout=60, check=True)
        got += [datetime.fromisoformat(" ".join(line.split()[-3:-1])).replace(
            tzinfo=UTC) for line in done.stdout.splitlines()
            if "Next elapse" in line or "Iter. #" in line]
    assert sorted(set(got))[:6] == want


@pytest.mark.parametrize("expr", ["0 0 L * *", "0 0 * * 1#2", "61 * * * *", "* * *"])
def test_cron_that_timers_cannot_say_is_refused_in_one_line(expr: str) -> None:
    with pytest.raises(CorralError):
        on_calendar(expr)


def test_the_readiness_wait_returns_once_the_port_answers(rich: Path, tmp_path: Path) -> None:
    """The ExecStartPost= of a tcp probe, run as systemd would split it, against a real
    listener: it returns 0 once connections succeed."""
    import socket

    from corral.convert.export.systemd.probes import ready_wait
    from corral.convert.report import Report
    from corral.manifest.spec import Agent, Probe, TcpCheck

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        agent = Agent(command=["x"], readiness=Probe(tcp=TcpCheck(port=port), period=0.1,
                                                     success_threshold=2))
        line = ready_wait("x", agent, Report("t"))
        assert line is not None
        argv = exec_argv(line)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_a_venv_agents_unit_builds_its_venv_once_per_requirements(tmp_path: Path) -> None:
    """The ExecStartPre= of a venv agent, run twice as systemd would with a state dir: the
    venv is made, and the second run finds the requirements' hash and installs nothing."""
    (tmp_path / "requirements.txt").write_text("# nothing to install\n")
    (tmp_path / "corral.yaml").write_text(
        "name: v\nagents:\n  w:\n    isolation: venv\n    command: python -c 'print(1)'\n")
    files = _export(tmp_path, tmp_path / "out")
    unit = files["units/v-w@.service"]
    check_systemd(str(tmp_path / "out"))
    line = next(x for x in unit.splitlines() if x.startswith("ExecStartPre="))
    state = tmp_path / "state"
    env = {"STATE_DIRECTORY": str(state), "PATH": "/usr/bin:/bin"}
    for _ in range(2):
        subprocess.run(exec_argv(line[len("ExecStartPre="):]), env=env, check=True,
                       capture_output=True, timeout=300)
    stamp = state / "venv-w/.corral-inputs"
    assert (state / "venv-w/bin/python").exists() and stamp.read_text().strip()
    # a changed requirements file is seen: the stamp no longer matches
    (tmp_path / "requirements.txt").write_text("# still nothing, but other bytes\n")
    before = stamp.read_text()
    subprocess.run(exec_argv(line[len("ExecStartPre="):]), env=env, check=True,
                   capture_output=True, timeout=300)
    assert stamp.read_text() != before
    assert "Environment=\"VIRTUAL_ENV=/var/lib/v/venv-w\"" in unit


def test_a_variable_systemd_refuses_by_name_reaches_the_agent_through_env(
        tmp_path: Path) -> None:
    (tmp_path / "corral.yaml").write_text(
        "name: es\nagents:\n  search:\n"
        "    command: python3 -c 'import os; print(os.environ[\"discovery.type\"])'\n"
        "    env: {discovery.type: single-node, DOTS: plain}\n")
    files = _export(tmp_path, tmp_path / "out")
    check_systemd(str(tmp_path / "out"))
    unit = files["units/es-search@.service"]
    assert 'Environment="DOTS=plain"' in unit and "Environment=\"discovery" not in unit
    line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    done = subprocess.run(exec_argv(line[len("ExecStart="):]), env={"PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout == "single-node\n"  # (dash drops such names: a JVM reads them)
    assert "env.discovery.type: set by env(1)" in files["report"]
