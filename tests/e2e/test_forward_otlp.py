"""Log forwarding to OTLP/HTTP, end to end: a fleet run by the real CLI and daemon with
``logs: forward: [{otlp: ...}]``, its records received by ``tests.support.receivers`` (no
OTLP collector is packaged here: the receiver decodes the real protobuf wire format with the
official schemas from ``opentelemetry-proto``). Every line arrives with its names, level,
time and fields; a secret stays redacted; a sink that is down then back loses nothing; a
full queue is an event and a metric while the agents run on; a daemon restart mid-stream
loses nothing; traces carry the lifecycle."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Project
from tests.support.receivers import HttpReceiver, free_port

pytestmark = pytest.mark.e2e

pytest.importorskip(
    "opentelemetry.proto",
    reason="the OTLP receiver decodes with "
    "opentelemetry-proto (the test extra: pip install -e '.[test]')",
)

# N lines: plain, a level word, a JSON line with fields; the secret printed once
SPEAKER = """\
import json, os, sys, time
n, index = int(sys.argv[1]), os.environ["CORRAL_INSTANCE_INDEX"]
for i in range(n):
    if i % 3 == 0:
        print(f"plain line {i} of {index}")
    elif i % 3 == 1:
        print(f"ERROR failing line {i} of {index}")
    else:
        print(json.dumps({"msg": f"json line {i} of {index}", "level": "warn", "seq": i,
                          "user": {"id": 7}}))
print("token is " + os.environ.get("TOKEN", "unset"), flush=True)
time.sleep(3600)
"""


@pytest.fixture
def otlp() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


def _ours(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if str(r["body"]).startswith(("plain", "ERROR", "json", "token"))]


def test_every_line_arrives_with_its_names_level_time_and_fields(
    project: Project, otlp: HttpReceiver
) -> None:
    project.file("speaker.py", SPEAKER)
    _with_metrics(
        project,
        f"""
        name: fwd
        secrets:
          token: {{environment: FWD_TOKEN}}
        agents:
          talk:
            command: python3 speaker.py 300
            replicas: 2
            secrets: [{{source: token, env: TOKEN}}]
        logs:
          forward:
            - otlp:
                endpoint: "{otlp.url}"
                headers: {{x-test: "yes"}}
                secret_headers: {{authorization: token}}
    """,
    )
    project.corral("up", "-d", env={"FWD_TOKEN": "s3cr3t-value-42"})
    rows = otlp.wait("otlp", lambda r: len(_ours(r)) >= 602, what="602 records")
    ours = _ours(rows)
    assert len(ours) == 602
    for index in ("1", "2"):
        mine = [r for r in ours if r["resource"]["service.instance.id"] == f"talk.{index}"]
        assert len(mine) == 301
        assert all(r["resource"]["service.name"] == "talk" for r in mine)
        assert all(r["resource"]["service.namespace"] == "fwd" for r in mine)
        bodies = [r["body"] for r in mine]
        assert bodies[:3] == [
            f"plain line 0 of {index}",
            f"ERROR failing line 1 of {index}",
            f"json line 2 of {index}",
        ]
        assert bodies[-1] == "token is ***"  # redacted in the store, so in the sink
        levels = {r["body"].split()[0]: (r["severity"], r["severity_text"]) for r in mine}
        assert levels["plain"] == (9, "INFO") and levels["ERROR"] == (17, "ERROR")
        assert levels["json"] == (13, "WARN")
        seqs = [r["attributes"]["seq"] for r in mine if r["body"].startswith("json")]
        assert seqs == list(range(2, 300, 3))  # in order, none twice
        fields = next(r["attributes"] for r in mine if r["body"].startswith("json"))
        assert fields["user"] == '{"id":7}' and fields["corral.agent"] == "talk"
        assert fields["corral.instance"] == f"talk.{index}"
        assert fields["corral.stream"] == "stdout"
    stored = {r["message"]: r for r in project.records("talk")}
    sample = next(r for r in ours if r["body"] == "plain line 0 of 1")
    want = stored["plain line 0 of 1"]["timestamp"]
    got = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sample["time"] // 10**9))
    assert want.startswith(got) and want[20:26] == f"{sample['time'] % 10**9 // 1000:06d}"
    assert "s3cr3t-value-42" not in json.dumps(otlp.got("otlp"))
    # the secret header is sent, and written nowhere: not in the config the forwarder reads,
    # the manifest the daemon keeps, `corral config`'s output or the events
    assert {h.get("authorization") for h in otlp.seen_headers} == {"s3cr3t-value-42"}
    assert {h.get("x-test") for h in otlp.seen_headers} == {"yes"}
    for path in project.state_dir.rglob("*"):
        if path.is_file() and "logs" not in path.parts:  # the agents own logs: redacted
            assert b"s3cr3t-value-42" not in path.read_bytes(), path
    shown = project.corral("config", env={"FWD_TOKEN": "s3cr3t-value-42"}).stdout
    assert "authorization: token" in shown and "s3cr3t" not in shown
    assert "s3cr3t" not in project.corral("events", "--json").stdout
    assert not otlp.mistakes
    metrics = _metrics(project)
    assert 'corral_log_forward_sent_total{kind="otlp",sink="otlp"}' in metrics


def _metrics(project: Project) -> str:
    """corral's /metrics, through the manifest's metrics port."""
    port = project.metrics_port  # type: ignore[attr-defined]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return str(reply.read().decode())


def _with_metrics(project: Project, text: str) -> None:
    project.metrics_port = free_port()  # type: ignore[attr-defined]
    project.write(
        text
        + f"""
        metrics: {{port: {project.metrics_port}}}
    """
    )


def _wait_metric(project: Project, needle: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = _metrics(project)
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(
        f"{needle} not in /metrics:\n" + "\n".join(x for x in text.splitlines() if "forward" in x)
    )


def _sample(project: Project, family: str, ok: Any, timeout: float = 30) -> float:
    """The otlp sink's sample of ``family`` once ``ok(value)`` holds (stats come each 1 s)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        for line in _metrics(project).splitlines():
            if line.startswith(f'{family}{{kind="otlp",sink="otlp"}} '):
                value = float(line.split()[-1])
        if value is not None and ok(value):
            return value
        time.sleep(0.2)
    raise AssertionError(f"{family}: last value {value}")


def _events(project: Project) -> list[dict[str, Any]]:
    out = project.corral("events", "--json").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _read(project: Project) -> Path:
    return project.state_dir / "forward"


# COUNT lines "seq I", BURST at a time every PAUSE seconds, then quiet
STREAMER = """\
import sys, time
count, burst, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
for start in range(0, count, burst):
    sys.stdout.write("".join(f"seq {i} " + "x" * 60 + "\\n"
                             for i in range(start, min(start + burst, count))))
    sys.stdout.flush()
    time.sleep(pause)
time.sleep(3600)
"""


def _seqs(rows: list[dict[str, Any]]) -> list[int]:
    return [int(r["body"].split()[1]) for r in rows if str(r["body"]).startswith("seq ")]


def _stream_fleet(
    project: Project, endpoint: str, count: int, burst: int, pause: float, queue: str = "256MiB"
) -> None:
    project.file("streamer.py", STREAMER)
    _with_metrics(
        project,
        f"""
        name: fwd
        agents:
          stream:
            command: python3 streamer.py {count} {burst} {pause}
        logs:
          forward:
            - otlp: {{endpoint: "{endpoint}"}}
              queue: {queue}
              batch: 500
    """,
    )


def test_a_sink_down_then_back_loses_nothing(project: Project, otlp: HttpReceiver) -> None:
    port = otlp.port
    otlp.stop()  # down: its port refuses connections
    _stream_fleet(project, f"http://127.0.0.1:{port}", 3000, 100, 0.02)
    project.corral("up", "-d")
    project.wait_for(
        lambda r: (
            len([x for x in project.records("stream") if x["message"].startswith("seq ")]) == 3000
        ),
        what="all 3000 lines stored",
    )
    text = _wait_metric(project, 'corral_log_forward_up{kind="otlp",sink="otlp"} 0.0')
    queued = [x for x in text.splitlines() if x.startswith("corral_log_forward_queue_records{")]
    assert queued and float(queued[0].split()[-1]) >= 3000, queued
    kinds = [e["event"] for e in _events(project)]
    assert "forward_sink_down" in kinds
    otlp.port = port
    otlp.start()  # back, on the same port
    rows = otlp.wait("otlp", lambda r: len(_seqs(r)) >= 3000, timeout=60, what="3000 lines")
    assert _seqs(rows) == list(range(3000))  # every line, in order, none twice
    _wait_metric(project, 'corral_log_forward_queue_records{kind="otlp",sink="otlp"} 0.0')
    _wait_metric(project, 'corral_log_forward_up{kind="otlp",sink="otlp"} 1.0')
    assert "forward_sink_up" in [e["event"] for e in _events(project)]


def test_a_full_queue_is_an_event_and_a_metric_and_blocks_no_agent(
    project: Project, otlp: HttpReceiver
) -> None:
    otlp.refuse = 503  # up, but refusing everything for now
    _stream_fleet(project, otlp.url, 5000, 500, 0.01, queue="64KiB")
    project.corral("up", "-d")
    # the agent wrote all its lines, into corral's own log, and runs on
    project.wait_for(
        lambda r: (
            len([x for x in project.records("stream") if x["message"].startswith("seq ")]) == 5000
        ),
        what="all 5000 lines stored",
    )
    assert project.ps()["stream.1"]["state"] == "running"
    assert _sample(project, "corral_log_forward_dropped_total", lambda v: v > 0) > 0
    queue = _sample(project, "corral_log_forward_queue_bytes", lambda v: v > 0)
    assert queue <= 64 * 1024
    full = [e for e in _events(project) if e["event"] == "forward_queue_full"]
    assert full and "queue is full" in full[0]["reason"] and full[0]["sink"] == "otlp"
    otlp.refuse = None  # what the queue held arrives; what it dropped does not
    _sample(project, "corral_log_forward_queue_records", lambda v: v == 0, timeout=60)
    final_dropped = _sample(project, "corral_log_forward_dropped_total", lambda v: True)
    seqs = _seqs(otlp.got("otlp"))
    assert len(seqs) == 5000 - final_dropped and len(set(seqs)) == len(seqs)
    assert seqs == sorted(seqs) and seqs[0] == 0  # the oldest were kept, the newest dropped


def test_a_daemon_killed_mid_stream_loses_nothing(project: Project, otlp: HttpReceiver) -> None:
    _stream_fleet(project, otlp.url, 6000, 50, 0.02)  # about 2.4 s of output
    project.corral("up", "-d")
    otlp.wait("otlp", lambda r: len(_seqs(r)) >= 500, what="the stream under way")
    pid = project.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # its forwarder sees its stdin end and stops too
    time.sleep(0.5)
    project.corral("up", "-d")  # a new daemon re-adopts the agent and forwards on
    assert project.ps()["stream.1"]["state"] == "running"
    rows = otlp.wait(
        "otlp", lambda r: set(_seqs(r)) >= set(range(6000)), timeout=60, what="all 6000 lines"
    )
    seqs = _seqs(rows)
    assert set(seqs) == set(range(6000))
    assert len(seqs) - 6000 <= 2000  # at least once: a batch in flight may come twice


def test_traces_carry_each_start_stop_restart_and_probe(
    project: Project, otlp: HttpReceiver
) -> None:
    """The spans of ``otlp: {traces: true}``, decoded with the official trace schema."""
    flag = project.root / "ready.flag"
    project.file("crash.py", "import time\ntime.sleep(0.3)\nraise SystemExit(3)\n")
    project.write(f"""
        name: fwd
        agents:
          web:
            command: sleep 3600
            readiness: {{exec: "test -f {flag}", period: 0.2s, failure_threshold: 1}}
          crash:
            command: python3 crash.py
            restart: {{policy: on-failure, max_restarts: 1, backoff: {{initial: 0.1}}}}
        logs:
          forward:
            - otlp: {{endpoint: "{otlp.url}/v1/logs", traces: true}}
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: r["web.1"]["health"] == "unhealthy", what="web unhealthy")
    flag.write_text("")
    project.wait_for(lambda r: r["web.1"]["health"] == "healthy", what="web healthy")
    project.corral("stop", "web")
    spans = otlp.wait(
        "traces",
        lambda s: (
            {"start web", "probe web", "stop web", "restart crash", "fatal crash"}
            <= {x["name"] for x in s}
        ),
        what="the lifecycle's spans",
    )
    by_name = {s["name"]: s for s in spans}
    start = by_name["start web"]
    assert start["status"] == 1 and start["end"] >= start["start"] > 0  # STATUS_CODE_OK
    assert start["resource"]["service.name"] == "web"
    assert start["attributes"]["corral.instance"] == "web.1"
    assert start["attributes"]["corral.state"] == "running"
    probes = [
        (s["attributes"]["corral.health"], s["status"]) for s in spans if s["name"] == "probe web"
    ]
    assert probes == [("unhealthy", 2), ("healthy", 1)]
    stop = by_name["stop web"]
    assert stop["trace_id"] == start["trace_id"] and stop["start"] >= start["end"]
    restart = by_name["restart crash"]
    assert restart["attributes"]["corral.exit_code"] == 3
    assert "exited with code 3" in restart["attributes"]["corral.reason"]
    fatal = by_name["fatal crash"]
    assert fatal["status"] == 2 and "crash loop" in fatal["message"]  # STATUS_CODE_ERROR
    assert all(s["kind"] == 1 for s in spans)  # SPAN_KIND_INTERNAL
    assert not otlp.mistakes


def _forwarder_pid(project: Project) -> int:
    needle = f"corral.logs.forward\0{project.state_dir}".encode()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if needle in Path(f"/proc/{name}/cmdline").read_bytes():
                    return int(name)
            except OSError:
                continue
    raise AssertionError("no forwarder process")


def test_a_killed_forwarder_is_started_again_and_loses_nothing(
    project: Project, otlp: HttpReceiver
) -> None:
    _stream_fleet(project, otlp.url, 4000, 50, 0.02)
    project.corral("up", "-d")
    otlp.wait("otlp", lambda r: len(_seqs(r)) >= 300, what="the stream under way")
    first = _forwarder_pid(project)
    os.kill(first, signal.SIGKILL)  # no clean stop: its cursor may lag its queue
    rows = otlp.wait(
        "otlp", lambda r: set(_seqs(r)) >= set(range(4000)), timeout=60, what="all 4000 lines"
    )
    assert set(_seqs(rows)) == set(range(4000))
    assert _forwarder_pid(project) != first
    exits = [e for e in _events(project) if e["event"] == "forward_exit"]
    assert exits and "started again" in exits[0]["reason"]


def test_the_queue_of_a_sink_down_outlives_a_daemon_restart(
    project: Project, otlp: HttpReceiver
) -> None:
    port = otlp.port
    otlp.stop()
    _stream_fleet(project, f"http://127.0.0.1:{port}", 2000, 100, 0.01)
    project.corral("up", "-d")
    project.wait_for(
        lambda r: (
            len([x for x in project.records("stream") if x["message"].startswith("seq ")]) == 2000
        ),
        what="all 2000 lines stored",
    )
    _sample(project, "corral_log_forward_queue_records", lambda v: v >= 2000)
    pid = project.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    project.corral("up", "-d")  # a new daemon and forwarder, the sink still down
    _sample(project, "corral_log_forward_queue_records", lambda v: v >= 2000)
    otlp.port = port
    otlp.start()
    rows = otlp.wait("otlp", lambda r: len(_seqs(r)) >= 2000, timeout=60, what="2000 lines")
    time.sleep(1)  # nothing more comes: none twice
    assert _seqs(otlp.got("otlp")) == list(range(2000)) and len(rows) >= 2000


def test_a_secret_header_that_cannot_be_read_fails_up_with_one_line(
    project: Project, otlp: HttpReceiver
) -> None:
    project.write(f"""
        name: fwd
        secrets:
          token: {{environment: FWD_NOT_SET_ANYWHERE}}
        agents:
          a: {{command: sleep 3600}}
        logs:
          forward:
            - otlp: {{endpoint: "{otlp.url}", secret_headers: {{authorization: token}}}}
    """)
    env = {k: v for k, v in os.environ.items() if k != "FWD_NOT_SET_ANYWHERE"}
    proc = project.corral("up", "-d", check=False, env=env)
    assert proc.returncode != 0
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "secret_headers" in lines[0] and "token" in lines[0], lines
    assert "Traceback" not in proc.stderr
