"""One scenario against both ends of the fleet protocol: the daemon over its Unix socket
(``Client``) and a supervisor inside this process (``LocalFleet``). Real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral import paths
from corral.api.calls import ApiError
from corral.api.client import Client
from corral.api.local import LocalFleet
from corral.api.protocol import Fleet
from corral.manifest import decode
from corral.manifest.loader import load

MANIFEST = """\
name: proto
agents:
  svc:
    command: sleep 300
    replicas: 2
  job:
    class: compute
    command: python3 -c "print('job done', flush=True)"
    depends_on:
      svc: {condition: started}
"""


@contextlib.contextmanager
def daemon_fleet(state_dir: Path) -> Iterator[Fleet]:
    proc = subprocess.Popen([sys.executable, "-m", "corral.daemon", "--state-dir",
                             str(state_dir)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    client = Client(paths.socket_path(str(state_dir)))
    try:
        deadline = time.monotonic() + 20
        while not client.alive():
            assert proc.poll() is None, "the daemon exited at start"
            assert time.monotonic() < deadline, "the daemon did not open its socket"
            time.sleep(0.02)
        yield client
        if client.alive():  # not after a test's own shutdown
            client.down()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def local_fleet(state_dir: Path) -> Iterator[Fleet]:
    with LocalFleet(str(state_dir)) as fleet:
        yield fleet


ENDS: dict[str, Callable[[Path], contextlib.AbstractContextManager[Fleet]]] = {
    "daemon": daemon_fleet, "local": local_fleet}


@pytest.fixture(params=sorted(ENDS))
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    (tmp_path / "corral.yaml").write_text(textwrap.dedent(MANIFEST))
    with ENDS[request.param](tmp_path / ".corral") as f:
        yield f


def until(fleet: Fleet, predicate: Callable[[dict[str, dict[str, Any]]], bool],
          what: str) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        rows = {r["name"]: r for r in fleet.instances()}
        if predicate(rows):
            return rows
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {rows}"
        time.sleep(0.05)


def test_one_scenario_through_either_end(fleet: Fleet, tmp_path: Path) -> None:
    manifest = decode.dump(load(tmp_path / "corral.yaml"))
    report = fleet.apply(manifest)
    assert sorted(report["started"]) == ["job.1", "svc.1", "svc.2"]
    waited = fleet.wait(timeout=20)
    assert waited["settled"] is True
    ready = fleet.wait(timeout=20, ready=True)  # the compute job: once it completed
    assert ready["settled"] is True and sorted(ready["ready"]) == ["job.1", "svc.1", "svc.2"]
    rows = until(fleet, lambda r: r["job.1"]["state"] == "exited", "the job")
    assert rows["job.1"]["exit_code"] == 0
    assert rows["svc.1"]["state"] == rows["svc.2"]["state"] == "running"
    assert fleet.status()["project"] == "proto"

    events = fleet.events()
    assert fleet.stop(["svc.1"]) == ["svc.1"]
    seen = next(e for e in events if e["data"].get("name") == "svc.1"
                and e["data"]["state"] == "stopped")
    assert seen["event"] == "state"
    events.close()  # type: ignore[attr-defined]  # a generator at both ends

    assert fleet.start(["svc.1"]) == ["svc.1"]
    until(fleet, lambda r: r["svc.1"]["state"] == "running", "svc.1 back")
    old_pid = fleet.instances()[1]["pid"]
    assert fleet.restart(["svc.2"]) == ["svc.2"]
    until(fleet, lambda r: r["svc.2"]["state"] == "running" and r["svc.2"]["pid"] != old_pid,
          "svc.2 restarted")

    scaled = fleet.scale("svc", 3)
    assert scaled["started"] == ["svc.3"]
    until(fleet, lambda r: r.get("svc.3", {}).get("state") == "running", "svc.3")

    records = fleet.logs(["job"])
    assert [r["message"] for r in records] == ["job done"]
    assert records[0]["instance"] == "job.1"
    assert fleet.logs(["job"], grep="nothing-like-this") == []

    assert 'corral_instance_up{' in fleet.metrics()
    spec = fleet.exec_spec("svc")
    assert spec["cwd"] == str(tmp_path) and spec["env"]["CORRAL_AGENT"] == "svc"

    with pytest.raises(ApiError) as missing:
        fleet.stop(["nope"])
    assert missing.value.exit_code == 4

    stopped = fleet.down()
    assert sorted(stopped) == ["job.1", "svc.1", "svc.2", "svc.3"]
    assert {r["state"] for r in fleet.instances()} <= {"stopped", "exited"}

    # after down, an apply is a new run of the fleet: every instance afresh, the job again
    again = fleet.apply(manifest)
    assert sorted(again["started"]) == ["job.1", "svc.1", "svc.2"]
    rows = until(fleet, lambda r: r.get("job.1", {}).get("state") == "exited", "the job again")
    assert sorted(rows) == ["job.1", "svc.1", "svc.2"]
    assert rows["svc.2"]["restarts"] == 0, "the restart of the run before down is not kept"
    assert [r["message"] for r in fleet.logs(["job"])] == ["job done", "job done"]


SECRETS = """\
name: proto
secrets:
  pw: {environment: PROTO_PW}
agents:
  svc:
    command: sleep 300
  job:
    class: compute
    command: python3 -c "import os; print('pw given', os.environ['PW'] == 'pw-42', flush=True)"
    secrets: [{source: pw, env: PW}]
"""


def test_secret_env_streams_and_shutdown_through_either_end(fleet: Fleet,
                                                            tmp_path: Path) -> None:
    """What the CLI needs of the protocol: the caller's secret variables with the manifest,
    the streams as the daemon sends them (``corral logs --json`` prints them unchanged),
    and the shutdown that stops the fleet before the daemon goes."""
    (tmp_path / "corral.yaml").write_text(SECRETS)
    manifest = decode.dump(load(tmp_path / "corral.yaml"))
    assert "PROTO_PW" not in os.environ  # only the sent value can reach the daemon
    fleet.apply(manifest, secret_env={"PROTO_PW": "pw-42"})
    until(fleet, lambda r: r["job.1"]["state"] == "exited", "the job")
    assert [r["message"] for r in fleet.logs(["job"])] == ["pw given True"]
    events = fleet.event_lines(logs=True, agents=["job"])
    assert fleet.start(["job.1"]) == ["job.1"]  # once more, while the events are followed
    live = next(line for line in events if line.startswith(b"data: ") and b"message" in line)
    events.close()  # type: ignore[attr-defined]  # a generator at both ends
    until(fleet, lambda r: r["job.1"]["state"] == "exited", "the job again")
    lines = [line for line in fleet.log_lines(["job"]) if line.strip()]
    assert len(lines) == 2 and b'"message":"pw given True"' in lines[1], lines
    assert live[6:] == lines[1]  # the same record, byte for byte, live and stored
    assert fleet.logs(["job"], grep="nothing-like-this") == []

    assert sorted(fleet.shutdown()) == ["job.1", "svc.1"]
    if isinstance(fleet, Client):  # the daemon leaves once it has answered
        deadline = time.monotonic() + 20
        while fleet.alive():
            assert time.monotonic() < deadline, "the daemon did not exit after its shutdown"
            time.sleep(0.05)
    else:  # in-process: the fleet stopped, the supervisor stays until close()
        assert {r["state"] for r in fleet.instances()} <= {"stopped", "exited"}


def test_either_end_applies_what_load_returns_as_it_is(fleet: Fleet, tmp_path: Path) -> None:
    """The loaded manifest and its JSON form apply alike."""
    loaded = load(tmp_path / "corral.yaml")
    assert sorted(fleet.apply(loaded)["started"]) == ["job.1", "svc.1", "svc.2"]
    for same in (loaded, decode.dump(loaded)):
        again = fleet.apply(same)
        assert again["started"] == again["recreated"] == []
        assert sorted(again["unchanged"]) == ["job.1", "svc.1", "svc.2"]


def test_part_of_the_fleet_through_either_end(fleet: Fleet, tmp_path: Path) -> None:
    """``up AGENT`` (``only``, with what it depends on), ``--force-recreate`` and ``rm``."""
    loaded = load(tmp_path / "corral.yaml")
    report = fleet.apply(loaded, only=["svc"])
    assert sorted(report["started"]) == ["svc.1", "svc.2"]
    assert sorted(r["name"] for r in fleet.instances()) == ["svc.1", "svc.2"]
    assert fleet.apply(loaded, only=["job"], no_deps=True)["started"] == ["job.1"]
    rows = until(fleet, lambda r: r["svc.1"]["state"] == "running", "svc")
    assert rows["svc.1"]["isolation"] == "process" and rows["svc.1"]["ports"] == []
    again = fleet.apply(loaded, only=["svc"], no_deps=True, recreate=True)
    assert sorted(again["recreated"]) == ["svc.1", "svc.2"]
    assert fleet.remove(["job"]) == ["job.1"]
    assert sorted(r["name"] for r in fleet.instances()) == ["svc.1", "svc.2"]
    with pytest.raises(ApiError) as missing:
        fleet.remove(["nope"])
    assert missing.value.exit_code == 4
    with pytest.raises(ApiError) as unknown:
        fleet.apply(loaded, only=["nope"])
    assert unknown.value.exit_code == 4
    assert fleet.apply(loaded)["started"] == ["job.1"]  # a whole apply creates it again
