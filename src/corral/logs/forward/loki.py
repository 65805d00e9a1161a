"""Loki's push API, JSON form (``POST URL/loki/api/v1/push``, ``application/json``), which
Loki accepts beside snappy-compressed protobuf: one stream per label set, labels ``project``,
``agent``, ``instance``, ``level`` and ``stream``; each value ``[unix ns as text, message,
{the line's own fields and run, as text}]`` (the third element is Loki's structured
metadata, 2.9 and later)."""

from __future__ import annotations

import json
from typing import Any

from corral.logs.forward.base import Record, Sink, fields, unix_nanos
from corral.logs.forward.http import Poster, joined
from corral.manifest.spec import LokiSink as Options

PATH = "/loki/api/v1/push"


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def push_body(project: str, records: list[Record]) -> bytes:
    streams: dict[tuple[str, ...], list[list[Any]]] = {}
    for r in records:
        key = (
            str(r.get("agent", "")),
            str(r.get("instance", "")),
            str(r.get("level", "info")),
            str(r.get("stream", "")),
        )
        meta = {k: _text(v) for k, v in fields(r).items()}
        if r.get("run") is not None:
            meta["run"] = str(r["run"])
        if r.get("partial"):
            meta["partial"] = "true"
        value: list[Any] = [str(unix_nanos(r)), _text(r.get("message", ""))]
        if meta:
            value.append(meta)
        streams.setdefault(key, []).append(value)
    body = {
        "streams": [
            {
                "stream": {"project": project, "agent": a, "instance": i, "level": lv, "stream": s},
                "values": values,
            }
            for (a, i, lv, s), values in streams.items()
        ]
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class Loki(Sink):
    kind = "loki"

    def __init__(self, name: str, project: str, options: Options) -> None:
        super().__init__(name, project)
        self.poster = Poster(joined(options.url, PATH), options.headers)

    def send(self, records: list[Record]) -> None:
        self.poster.post(push_body(self.project, records), "application/json")

    def close(self) -> None:
        self.poster.close()


def make(name: str, project: str, options: Any) -> Sink:
    return Loki(name, project, options)
