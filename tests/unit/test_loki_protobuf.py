"""Loki's native push body as Loki reads it: snappy block decompression (``cramjam``), then
``logproto.PushRequest`` parsed with the test's class built from the official
``pkg/push/push.proto`` (``tests.support.lokipush``), labels parsed from their text; and the
``json`` format kept beside it."""

from __future__ import annotations

import json

import cramjam

from corral.logs.forward.loki import push_body, streams
from corral.logs.forward.lokiproto import Encoder, label_text
from tests.support.lokipush import PushRequest, parse_labels

RECORDS = [
    {
        "timestamp": "2026-12-02T14:03:05.123456Z",
        "agent": "web",
        "instance": "web.1",
        "stream": "stdout",
        "level": "error",
        "message": "boom \u00e9",
        "path": '/a "b"\\',
        "seq": 5,
    },
    {
        "timestamp": "2026-12-02T14:03:06.000001Z",
        "agent": "web",
        "instance": "web.1",
        "stream": "stdout",
        "level": "error",
        "message": "second",
        "run": 3,
    },
    {
        "timestamp": "2026-12-02T14:03:07.5Z",
        "agent": "db",
        "instance": 'db "x"\n',
        "stream": "stderr",
        "level": "info",
        "message": "other",
    },
]


def test_protobuf_push_decodes_with_the_official_schema() -> None:
    body = Encoder().push_body(streams("proj", RECORDS))
    push = PushRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
    assert len(push.streams) == 2
    web, db = push.streams
    assert (
        web.labels
        == '{project="proj", agent="web", instance="web.1", level="error", stream="stdout"}'
    )
    assert parse_labels(db.labels) == {
        "project": "proj",
        "agent": "db",
        "instance": 'db "x"\n',
        "level": "info",
        "stream": "stderr",
    }
    first, second = web.entries
    assert (first.timestamp.seconds, first.timestamp.nanos) == (1796220185, 123456000)
    assert first.line == "boom \u00e9"
    assert {p.name: p.value for p in first.structuredMetadata} == {
        "path": '/a "b"\\',
        "seq": "5",
    }
    assert second.timestamp.nanos == 1000 and second.line == "second"
    assert [(p.name, p.value) for p in second.structuredMetadata] == [("run", "3")]
    assert db.entries[0].timestamp.nanos == 500_000_000 and not db.entries[0].structuredMetadata


def test_label_text_round_trips_through_lokis_syntax() -> None:
    labels = {"a": 'q"uote', "b": "back\\slash", "c": "new\nline", "d": ""}
    assert parse_labels(label_text(labels)) == labels


def test_json_format_carries_the_same_streams() -> None:
    body = json.loads(push_body("proj", RECORDS))
    assert [s["stream"]["agent"] for s in body["streams"]] == ["web", "db"]
    assert body["streams"][0]["values"][0] == [
        "1796220185123456000",
        "boom \u00e9",
        {"path": '/a "b"\\', "seq": "5"},
    ]
    assert body["streams"][1]["values"] == [["1796220187500000000", "other"]]
