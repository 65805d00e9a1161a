"""The forwarder's on-disk parts: a sink's bounded queue (``spool``) and the byte cursor over
the agents' log files (``tail``), across segments, rotations and restarts; and the OTLP
encoding, decoded with the official schemas (``opentelemetry-proto``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.logs.forward import spool as spool_mod
from corral.logs.forward.spool import Spool
from corral.logs.forward.tail import Tail
from corral.logs.sink import AgentLog


def _lines(start: int, stop: int) -> bytes:
    return b"".join(json.dumps({"seq": i}).encode() + b"\n" for i in range(start, stop))


def _seqs(data: bytes) -> list[int]:
    return [json.loads(x)["seq"] for x in data.splitlines()]


def test_the_queue_gives_records_oldest_first_and_keeps_them_until_committed(
    tmp_path: Path,
) -> None:
    q = Spool(str(tmp_path / "q"), 1 << 20)
    assert q.append(_lines(0, 10)) == 0
    data, pos = q.peek(4)
    assert _seqs(data) == [0, 1, 2, 3]
    again, same = q.peek(4)  # not committed: the same batch again
    assert again == data and same == pos
    q.commit(pos, data)
    assert q.records == 6 and _seqs(q.peek(100)[0]) == list(range(4, 10))
    q.close()
    reopened = Spool(str(tmp_path / "q"), 1 << 20)  # a restart: from the last commit
    assert reopened.records == 6 and _seqs(reopened.peek(100)[0]) == list(range(4, 10))


def test_a_full_queue_drops_the_newest_records_and_counts_them(tmp_path: Path) -> None:
    chunk = _lines(0, 100)
    q = Spool(str(tmp_path / "q"), len(chunk) + 50)
    assert q.append(chunk) == 0
    dropped = q.append(_lines(100, 110))
    assert 0 < dropped <= 10 and q.bytes <= len(chunk) + 50
    data, pos = q.peek(1000)
    assert _seqs(data) == list(range(0, 110 - dropped))  # whole records only
    q.commit(pos, data)
    assert q.append(_lines(200, 210)) == 0  # room again once the sink took them


def test_the_queue_moves_across_segments_and_deletes_the_taken_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_mod, "SEGMENT", 200)
    q = Spool(str(tmp_path / "q"), 1 << 20)
    for i in range(0, 100, 10):
        q.append(_lines(i, i + 10))
    assert len(list((tmp_path / "q").glob("*.jsonl"))) > 3
    got: list[int] = []
    while True:
        data, pos = q.peek(7)
        if not data:
            break
        got += _seqs(data)
        q.commit(pos, data)
    assert got == list(range(100)) and q.records == 0 and q.bytes == 0
    assert len(list((tmp_path / "q").glob("*.jsonl"))) == 1


def _feed(log: AgentLog, start: int, stop: int) -> None:
    out = log.writer("web.1")
    out.feed("stdout", b"".join(b"line %d\n" % i for i in range(start, stop)))


def _polled(tail: Tail) -> list[int]:
    out = []
    for agent, data in tail.poll():
        assert agent == "web"
        out += [int(json.loads(x)["message"].split()[1]) for x in data.splitlines()]
    return out


def test_the_cursor_reads_across_a_rotation_and_resumes_after_a_restart(tmp_path: Path) -> None:
    logs, cursor = tmp_path / "logs", str(tmp_path / "cursor.json")
    log = AgentLog(logs, "web", max_size=4000, keep=3)
    tail = Tail(str(logs), cursor)
    _feed(log, 0, 10)
    assert _polled(tail) == list(range(10))
    _feed(log, 10, 200)  # rotates (several times) between polls
    assert (logs / "web.log.1").exists()
    got = _polled(tail)
    tail.save()
    tail.close()
    _feed(log, 200, 230)  # while no forwarder runs: rotated again
    _feed(log, 230, 260)
    resumed = Tail(str(logs), cursor)
    got += _polled(resumed)
    rotated_away = resumed.lost
    assert got == list(range(10, 260)) or rotated_away
    assert not rotated_away  # keep: 3 held what was not read yet
    assert _polled(resumed) == []


def test_a_place_rotated_away_is_reported_as_lost(tmp_path: Path) -> None:
    logs, cursor = tmp_path / "logs", str(tmp_path / "cursor.json")
    log = AgentLog(logs, "web", max_size=2000, keep=1)
    tail = Tail(str(logs), cursor)
    _feed(log, 0, 5)
    assert _polled(tail) == list(range(5))
    tail.save()
    tail.close()
    for i in range(5, 400, 20):  # many rotations with keep: 1
        _feed(log, i, i + 20)
    resumed = Tail(str(logs), cursor)
    got = _polled(resumed)
    assert resumed.lost == ["web"]
    assert got and got[-1] == 404 and got == sorted(got)


def test_otlp_logs_decode_with_the_official_schema() -> None:
    logs_pb2 = pytest.importorskip(
        "opentelemetry.proto.collector.logs.v1.logs_service_pb2",
        reason="opentelemetry-proto (the test extra) decodes OTLP",
    )
    from corral.logs.forward.otlp import export_logs

    records = [
        {
            "timestamp": "2026-12-02T14:03:05.123456Z",
            "agent": "web",
            "instance": "web.2",
            "stream": "stderr",
            "level": "error",
            "message": "boom ☃",
            "run": 3,
            "code": -5,
            "ratio": 0.5,
            "ok": True,
            "nested": {"a": [1]},
        },
        {
            "timestamp": "2026-12-02T14:03:06.000001Z",
            "agent": "db",
            "instance": "db.1",
            "stream": "stdout",
            "level": "debug",
            "message": "hi",
            "partial": True,
        },
    ]
    req = logs_pb2.ExportLogsServiceRequest.FromString(export_logs("proj", records))
    assert len(req.resource_logs) == 2
    first = req.resource_logs[0]
    res = {kv.key: kv.value.string_value for kv in first.resource.attributes}
    assert res == {
        "service.name": "web",
        "service.instance.id": "web.2",
        "service.namespace": "proj",
        "corral.project": "proj",
    }
    (lr,) = first.scope_logs[0].log_records
    assert lr.time_unix_nano == 1796220185123456000 == lr.observed_time_unix_nano
    assert (lr.severity_number, lr.severity_text, lr.body.string_value) == (17, "ERROR", "boom ☃")
    attrs = {kv.key: kv.value for kv in lr.attributes}
    assert attrs["corral.run"].int_value == 3 and attrs["code"].int_value == -5
    assert attrs["ratio"].double_value == 0.5 and attrs["ok"].bool_value is True
    assert attrs["nested"].string_value == '{"a":[1]}'
    assert attrs["corral.stream"].string_value == "stderr"
    (second,) = req.resource_logs[1].scope_logs[0].log_records
    assert second.severity_number == 5
    assert {kv.key: kv.value.bool_value for kv in second.attributes}["corral.partial"]
