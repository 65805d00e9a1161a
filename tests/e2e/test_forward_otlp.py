"""Log forwarding to OTLP/HTTP, end to end: a fleet run by the real CLI and daemon with
``logs: forward: [{otlp: ...}]``, its records received by ``tests.support.receivers`` (no
OTLP collector is packaged here: the receiver decodes the real protobuf wire format with the
official schemas from ``opentelemetry-proto``). Every line arrives with its names, level,
time and fields; a secret stays redacted; a sink that is down then back loses nothing; a
full queue is an event and a metric while the agents run on; a daemon restart mid-stream
loses nothing; traces carry the lifecycle."""

from __future__ import annotations

import json
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
            - otlp: {{endpoint: "{otlp.url}", headers: {{x-test: "yes"}}}}
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


def _events(project: Project) -> list[dict[str, Any]]:
    out = project.corral("events", "--json").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _read(project: Project) -> Path:
    return project.state_dir / "forward"
