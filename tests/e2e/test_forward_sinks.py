"""Log forwarding to every sink at once, end to end through the real CLI and daemon: one
fleet forwarding to a real rsyslog (Debian's, over TCP with octet counting and over UDP), and
to test receivers for the sinks no server of which is packaged here (``tests.support.
receivers``): Loki's push API, both its native snappy protobuf (the default, parsed with a
class built from the official ``push.proto``) and its JSON body; Elasticsearch's bulk NDJSON;
Fluentd's forward protocol, decoded with ``msgpack``; OTLP has its own tests. Each gets every
line with the agent, instance, level, time and fields."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Project
from tests.support.receivers import FluentReceiver, HttpReceiver
from tests.support.rsyslog import Rsyslog, rsyslog

pytestmark = pytest.mark.e2e

pytest.importorskip(
    "msgpack",
    reason="the Fluent sink and its receiver need msgpack (pip install -e '.[forward,test]')",
)

N = 200
# N lines per instance: "line I of INDEX", every 4th at level error, every 5th a JSON line
# with fields; then a two-line Python traceback (one record with a newline)
SPEAKER = f"""\
import json, os, sys, time
index = os.environ["CORRAL_INSTANCE_INDEX"]
for i in range({N}):
    if i % 5 == 0:
        print(json.dumps({{"msg": f"line {{i}} of {{index}}", "level": "warn", "seq": i,
                          "path": "/a b]\\\\"}}))
    elif i % 4 == 0:
        print(f"ERROR line {{i}} of {{index}}")
    else:
        print(f"line {{i}} of {{index}}")
sys.stdout.flush()
time.sleep(0.2)
sys.stderr.write('Traceback (most recent call last):\\n  File "x.py", line 1\\n'
                 'ValueError: last of ' + index + '\\n')
sys.stderr.flush()
time.sleep(3600)
"""


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def fluent() -> Iterator[FluentReceiver]:
    receiver = FluentReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def syslog(tmp_path: Path) -> Iterator[Rsyslog]:
    with rsyslog(tmp_path) as r:
        yield r


def _numbered(text: str) -> tuple[str, int] | None:
    m = re.search(r"line (\d+) of (\d)", text)
    return (f"talk.{m[2]}", int(m[1])) if m else None


def test_every_sink_gets_every_line_with_its_labels(
    project: Project, http: HttpReceiver, fluent: FluentReceiver, syslog: Rsyslog
) -> None:
    project.file("speaker.py", SPEAKER)
    project.write(f"""
        name: fleet
        agents:
          talk:
            command: python3 speaker.py
            replicas: 2
        logs:
          forward:
            - loki: {{url: "{http.url}"}}
            - loki: {{url: "{http.url}", format: json}}
              name: loki-json
            - elasticsearch: {{url: "{http.url}", index: corral-test}}
            - fluent: {{address: "{fluent.address}", tag: app}}
            - syslog: {{address: "127.0.0.1:{syslog.tcp}", format: rfc5424}}
            - syslog: {{address: "127.0.0.1:{syslog.udp}", protocol: udp}}
              name: syslog-udp
    """)
    project.corral("up", "-d")
    total = 2 * (N + 1)
    want = {(f"talk.{i}", n) for i in (1, 2) for n in range(N)}
    pushed = http.wait("loki", lambda r: len(r) >= 2 * total, what=f"{2 * total} Loki values")
    stored = project.records("talk")
    as_json = [r for r in pushed if r["format"] == "json"]
    loki = [r for r in pushed if r["format"] == "protobuf"]
    assert len(as_json) == len(loki) == total
    key = lambda r: (r["time"], r["line"])  # noqa: E731
    assert sorted(as_json, key=key) == sorted([{**r, "format": "json"} for r in loki], key=key), (
        "the protobuf and JSON pushes carry the same labels, times, lines and metadata"
    )
    assert {_numbered(r["line"]) for r in loki} - {None} == want and len(loki) == total
    one = next(r for r in loki if r["line"] == "ERROR line 4 of 1")
    assert one["labels"] == {
        "project": "fleet",
        "agent": "talk",
        "instance": "talk.1",
        "level": "error",
        "stream": "stdout",
    }
    fielded = next(r for r in loki if r["line"] == "line 5 of 2")
    assert fielded["labels"]["level"] == "warn"
    assert fielded["metadata"] == {"seq": "5", "path": "/a b]\\"}
    stack = next(r for r in loki if "ValueError: last of 1" in r["line"])
    assert stack["labels"]["level"] == "error" and stack["labels"]["stream"] == "stderr"
    assert stack["line"].count("\n") == 2
    record = next(r for r in stored if r["message"] == "ERROR line 4 of 1")
    assert _ns(record["timestamp"]) == one["time"]

    es = http.wait("elasticsearch", lambda r: len(r) >= total, what=f"{total} documents")
    assert {r["index"] for r in es} == {"corral-test"} and len(es) == total
    assert {_numbered(r["doc"]["message"]) for r in es} - {None} == want
    doc = next(r["doc"] for r in es if r["doc"]["message"] == "line 5 of 2")
    assert doc["@timestamp"] == doc["timestamp"] and doc["seq"] == 5
    assert doc["agent"] == "talk" and doc["instance"] == "talk.2" and doc["level"] == "warn"
    assert doc["project"] == "fleet"

    got = fluent.wait("fluent", lambda r: len(r) >= total, what=f"{total} events")
    assert {r["tag"] for r in got} == {"app.talk"} and len(got) == total
    assert {_numbered(r["record"]["message"]) for r in got} - {None} == want
    event = next(r for r in got if r["record"]["message"] == "line 5 of 2")
    assert event["record"]["seq"] == 5 and event["record"]["instance"] == "talk.2"
    assert event["time"] == _ns(
        next(r for r in stored if r["message"] == "line 5 of 2")["timestamp"]
    )

    messages = syslog.wait(2 * total)
    for channel in ("imtcp", "imudp"):
        mine = [m for m in messages if m["input"] == channel]
        assert len(mine) == total, (channel, len(mine))
        assert {_numbered(m["msg"]) for m in mine} - {None} == want
        error = next(m for m in mine if m["msg"].lstrip("\ufeff") == "ERROR line 4 of 1")
        assert error["version"] == "1" and error["facility"] == 16  # local0
        assert error["severity"] == 3 and error["app"] == "talk"
        assert error["procid"] == "talk.1" and error["msgid"] == "stdout"
        assert error["time"] == record["timestamp"]
        assert 'agent="talk"' in error["sd"] and 'level="error"' in error["sd"]
        assert error["sd"].startswith('[corral@32473 project="fleet"')
        fields = next(m for m in mine if m["msg"].lstrip("\ufeff") == "line 5 of 2")["sd"]
        assert 'seq="5"' in fields and r'path="/a b\]\\"' in fields
        trace = next(m for m in mine if "last of 2" in m["msg"])
        assert trace["severity"] == 3 and trace["msgid"] == "stderr"
        if channel == "imtcp":  # octet counting keeps the stack's lines in one message
            assert trace["msg"].count("\n") == 2
    assert not http.mistakes
    metrics = _names(project)
    assert {"loki", "loki-json", "elasticsearch", "fluent", "syslog", "syslog-udp"} <= metrics


def _ns(stamp: str) -> int:
    from datetime import datetime

    whole = datetime.fromisoformat(stamp[:19] + "+00:00").timestamp()
    return int(whole) * 10**9 + int(stamp[20:26]) * 1000


def _names(project: Project) -> set[str]:
    """The sinks with a queue, once no sink was ever reported down."""
    out = project.corral("events", "--json").stdout
    events: list[dict[str, Any]] = [json.loads(x) for x in out.splitlines() if x]
    downs = [e for e in events if e["event"] == "forward_sink_down"]
    assert not downs, downs
    return {p.name for p in (project.state_dir / "forward").iterdir() if p.is_dir()}
