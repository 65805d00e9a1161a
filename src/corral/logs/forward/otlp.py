"""OTLP/HTTP logs: an ``ExportLogsServiceRequest`` (protobuf) POSTed to ENDPOINT/v1/logs.

One ``ResourceLogs`` per instance of the batch, its resource naming the project, the agent
(``service.name``) and the instance (``service.instance.id``); each record a ``LogRecord``
with its time, severity (number and text), the message as its body, and as attributes the
instance's names again, its stream, its run (scheduled agents) and the line's own fields.
"""

from __future__ import annotations

import struct
from typing import Any

from corral.logs.forward import protobuf as pb
from corral.logs.forward.base import SEVERITY, Record, Sink, fields, unix_nanos
from corral.logs.forward.http import Poster, joined
from corral.manifest.spec import OtlpSink as Options

PROTOBUF = "application/x-protobuf"
SCOPE = pb.message(1, pb.string(1, "corral"))  # InstrumentationScope{name}


def resource(project: str, agent: str, instance: str) -> bytes:
    """A ``Resource`` with the fleet's names."""
    return b"".join(
        (
            pb.key_value(1, "service.name", agent),
            pb.key_value(1, "service.instance.id", instance),
            pb.key_value(1, "service.namespace", project),
            pb.key_value(1, "corral.project", project),
        )
    )


_FIXED = struct.Struct("<Q")
_heads: dict[tuple[Any, ...], bytes] = {}  # the fields every record of a kind shares


def _head(agent: Any, instance: Any, stream: Any, level: Any, run: Any, partial: Any) -> bytes:
    """Severity (number, text) and corral's attributes, encoded once per kind of record."""
    key = (agent, instance, stream, level, run, partial)
    found = _heads.get(key)
    if found is None:
        if len(_heads) > 10_000:
            _heads.clear()
        text = level.upper() if isinstance(level, str) else "INFO"
        parts = [
            pb.uint(2, SEVERITY.get(level, 9)),
            pb.string(3, text),
            pb.key_value(6, "corral.agent", agent or ""),
            pb.key_value(6, "corral.instance", instance or ""),
            pb.key_value(6, "corral.stream", stream or ""),
            pb.key_value(6, "corral.level", level),
        ]
        if run is not None:
            parts.append(pb.key_value(6, "corral.run", run))
        if partial:
            parts.append(pb.key_value(6, "corral.partial", True))
        found = _heads[key] = b"".join(parts)
    return found


def log_record(r: Record) -> bytes:
    """One ``LogRecord`` (without its field tag): time and observed time (1, 11), severity
    (2, 3), the message as its body (5), attributes (6)."""
    level = r.get("level", "info")
    head = _head(
        r.get("agent"), r.get("instance"), r.get("stream"), level, r.get("run"), r.get("partial")
    )
    body = r.get("message", "")
    if isinstance(body, str):
        text = body.encode("utf-8", "replace")
        value = b"\x0a" + pb.varint(len(text)) + text
    else:
        value = pb.any_value(body)
    ts = _FIXED.pack(unix_nanos(r))
    own = fields(r) if len(r) > 6 else None
    extra = b"".join(pb.key_value(6, k, v) for k, v in own.items()) if own else b""
    return b"".join(
        (b"\x09", ts, head, b"\x2a", pb.varint(len(value)), value, extra, b"\x59", ts)
    )  # 0x09: field 1 fixed64; 0x2a: 5 bytes; 0x59: 11 fixed64


def export_logs(project: str, records: list[Record]) -> bytes:
    by_instance: dict[tuple[str, str], list[bytes]] = {}
    for r in records:
        key = (str(r.get("agent", "")), str(r.get("instance", "")))
        record = log_record(r)
        by_instance.setdefault(key, []).append(b"\x12" + pb.varint(len(record)) + record)
    out = []
    for (agent, instance), logs in by_instance.items():
        scope = pb.message(2, SCOPE + b"".join(logs))  # ScopeLogs
        out.append(pb.message(1, pb.message(1, resource(project, agent, instance)) + scope))
    return b"".join(out)


class OtlpLogs(Sink):
    kind = "otlp"

    def __init__(self, name: str, project: str, options: Options) -> None:
        super().__init__(name, project)
        self.poster = Poster(joined(options.endpoint, "/v1/logs"), options.headers)

    def send(self, records: list[Record]) -> None:
        self.poster.post(export_logs(self.project, records), PROTOBUF)

    def close(self) -> None:
        self.poster.close()


def make(name: str, project: str, options: Any) -> Sink:
    return OtlpLogs(name, project, options)
