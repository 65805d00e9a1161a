"""Loki's ``logproto.PushRequest`` for the test receiver, built with the ``protobuf`` runtime
from the official schema, grafana/loki ``pkg/push/push.proto`` (package ``logproto``; no
``protoc`` here, so the file's messages are written out as a descriptor, field by field,
without reusing corral's own encoder):

    message PushRequest      { repeated StreamAdapter streams = 1; string format = 2; }
    message StreamAdapter    { string labels = 1; repeated EntryAdapter entries = 2;
                               uint64 hash = 3; }
    message LabelPairAdapter { string name = 1; string value = 2; }
    message EntryAdapter     { google.protobuf.Timestamp timestamp = 1; string line = 2;
                               repeated LabelPairAdapter structuredMetadata = 3; }

and Loki's label-set text (``{name="value", ...}``, Go-quoted values) parsed as Loki does."""

from __future__ import annotations

import re
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

F = descriptor_pb2.FieldDescriptorProto
_REP, _OPT = F.LABEL_REPEATED, F.LABEL_OPTIONAL


def _message_class() -> Any:
    pool = descriptor_pool.DescriptorPool()
    ts = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(ts)
    pool.Add(ts)
    f = descriptor_pb2.FileDescriptorProto(
        name="pkg/push/push.proto", package="logproto", syntax="proto3", dependency=[ts.name]
    )

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        m = f.message_type.add(name=name)
        for field, number, kind, label, type_name in fields:
            m.field.add(name=field, number=number, type=kind, label=label)
            if type_name:
                m.field[-1].type_name = type_name

    message(
        "PushRequest",
        ("streams", 1, F.TYPE_MESSAGE, _REP, ".logproto.StreamAdapter"),
        ("format", 2, F.TYPE_STRING, _OPT, ""),
    )
    message(
        "StreamAdapter",
        ("labels", 1, F.TYPE_STRING, _OPT, ""),
        ("entries", 2, F.TYPE_MESSAGE, _REP, ".logproto.EntryAdapter"),
        ("hash", 3, F.TYPE_UINT64, _OPT, ""),
    )
    message(
        "LabelPairAdapter",
        ("name", 1, F.TYPE_STRING, _OPT, ""),
        ("value", 2, F.TYPE_STRING, _OPT, ""),
    )
    message(
        "EntryAdapter",
        ("timestamp", 1, F.TYPE_MESSAGE, _OPT, ".google.protobuf.Timestamp"),
        ("line", 2, F.TYPE_STRING, _OPT, ""),
        ("structuredMetadata", 3, F.TYPE_MESSAGE, _REP, ".logproto.LabelPairAdapter"),
    )
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


PushRequest = _message_class()

_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}


def parse_labels(text: str) -> dict[str, str]:
    """``{agent="web", instance="web.1"}`` as a dict; ValueError when it is not one."""
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"not a label set: {text!r}")
    inner, labels, at = text[1:-1], {}, 0
    while at < len(inner):
        m = _PAIR.match(inner, at)
        if m is None:
            raise ValueError(f"bad label set at {at}: {text!r}")
        labels[m[1]] = re.sub(r"\\(.)", lambda e: _ESCAPES[e[1]], m[2])
        at = m.end()
    return labels
