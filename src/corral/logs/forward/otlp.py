"""OTLP/HTTP logs: an ``ExportLogsServiceRequest`` (protobuf) POSTed to ENDPOINT/v1/logs.

One ``ResourceLogs`` per instance of the batch, its resource naming the project, the agent
(``service.name``) and the instance (``service.instance.id``); each record a ``LogRecord``
with its time, severity (number and text), the message as its body, and as attributes the
instance's names again, its stream, its run (scheduled agents) and the line's own fields.
"""

from __future__ import annotations

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


def log_record(r: Record) -> bytes:
    level = r.get("level", "info")
    body = r.get("message", "")
    attrs = [
        pb.key_value(6, "corral.agent", r.get("agent", "")),
        pb.key_value(6, "corral.instance", r.get("instance", "")),
        pb.key_value(6, "corral.stream", r.get("stream", "")),
        pb.key_value(6, "corral.level", level),
    ]
    if (run := r.get("run")) is not None:
        attrs.append(pb.key_value(6, "corral.run", run))
    if r.get("partial"):
        attrs.append(pb.key_value(6, "corral.partial", True))
    attrs.extend(pb.key_value(6, k, v) for k, v in fields(r).items())
    ts = unix_nanos(r)
    return b"".join(
        (
            pb.fixed64(1, ts),
            pb.uint(2, SEVERITY.get(level, 9)),
            pb.string(3, level.upper() if isinstance(level, str) else "INFO"),
            pb.message(5, pb.any_value(body)),
            *attrs,
            pb.fixed64(11, ts),
        )
    )


def export_logs(project: str, records: list[Record]) -> bytes:
    by_instance: dict[tuple[str, str], list[bytes]] = {}
    for r in records:
        key = (str(r.get("agent", "")), str(r.get("instance", "")))
        by_instance.setdefault(key, []).append(pb.message(2, log_record(r)))
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
