"""Loki's native push body: a ``logproto.PushRequest`` (grafana/loki ``pkg/push/push.proto``)
serialized by the ``protobuf`` runtime, then snappy block-compressed (not the framed
format), as Loki's ``/loki/api/v1/push`` takes with ``Content-Type: application/x-protobuf``.

The message classes are built here from a descriptor that mirrors push.proto:

    message PushRequest { repeated StreamAdapter streams = 1; }
    message StreamAdapter { string labels = 1; repeated EntryAdapter entries = 2;
                            uint64 hash = 3; }
    message LabelPairAdapter { string name = 1; string value = 2; }
    message EntryAdapter { google.protobuf.Timestamp timestamp = 1; string line = 2;
                           repeated LabelPairAdapter structuredMetadata = 3; }

``labels`` is the stream's label set in Prometheus text form, ``{agent="web", ...}``.
Needs ``protobuf`` and ``cramjam`` (the ``forward`` extra)."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2  # type: ignore[import-untyped]

_FILE = "corral/loki/push.proto"
_PACKAGE = "logproto"

_F = descriptor_pb2.FieldDescriptorProto
_SCHEMA: dict[str, list[tuple[str, int, int, int, str]]] = {
    # message: [(field, number, type, label, message type)]
    "PushRequest": [("streams", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".logproto.StreamAdapter")],
    "StreamAdapter": [
        ("labels", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("entries", 2, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".logproto.EntryAdapter"),
        ("hash", 3, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
    ],
    "LabelPairAdapter": [
        ("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("value", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
    ],
    "EntryAdapter": [
        ("timestamp", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.Timestamp"),
        ("line", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        (
            "structuredMetadata",
            3,
            _F.TYPE_MESSAGE,
            _F.LABEL_REPEATED,
            ".logproto.LabelPairAdapter",
        ),
    ],
}


def _push_request() -> Any:
    pool = descriptor_pool.DescriptorPool()
    ts = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(ts)
    pool.Add(ts)
    proto = descriptor_pb2.FileDescriptorProto(
        name=_FILE, package=_PACKAGE, syntax="proto3", dependency=[ts.name]
    )
    for name, schema in _SCHEMA.items():
        msg = proto.message_type.add(name=name)
        for field, number, kind, label, type_name in schema:
            msg.field.add(
                name=field, number=number, type=kind, label=label, type_name=type_name or None
            )
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def label_text(labels: dict[str, str]) -> str:
    """A label set as Loki parses it: ``{agent="web", instance="web.1"}``."""
    return "{" + ", ".join(f"{k}={_quoted(v)}" for k, v in labels.items()) + "}"


class Encoder:
    def __init__(self) -> None:
        import cramjam  # only a fleet forwarding to Loki's protobuf push

        self._compress = cramjam.snappy.compress_raw
        self._request = _push_request()

    def push_body(
        self, streams: list[tuple[dict[str, str], list[tuple[int, str, dict[str, str]]]]]
    ) -> bytes:
        req = self._request()
        for labels, entries in streams:
            stream = req.streams.add(labels=label_text(labels))
            for ns, line, meta in entries:
                entry = stream.entries.add(line=line)
                entry.timestamp.seconds, entry.timestamp.nanos = divmod(ns, 1_000_000_000)
                for name, value in meta.items():
                    entry.structuredMetadata.add(name=name, value=value)
        return bytes(self._compress(req.SerializeToString()))
