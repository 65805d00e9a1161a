"""Loki's push API (``POST URL/loki/api/v1/push``): one stream per label set, labels
``project``, ``agent``, ``instance``, ``level`` and ``stream``; each entry a time in unix ns,
the message, and the line's own fields and run as structured metadata (Loki 2.9 and later).

Two bodies, as Loki takes both: ``protobuf`` (the default, Loki's native push: a snappy
block-compressed ``logproto.PushRequest``, see ``lokiproto``) and ``json``
(``{"streams": [{"stream": {labels}, "values": [[ns as text, line, {metadata}]]}]}``)."""

from __future__ import annotations

import json
from typing import Any

from corral.logs.forward.base import Record, Sink, fields, unix_nanos
from corral.logs.forward.http import Poster, joined
from corral.manifest.spec import LokiSink as Options

PATH = "/loki/api/v1/push"
LABELS = ("agent", "instance", "level", "stream")

Entry = tuple[int, str, dict[str, str]]


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def streams(project: str, records: list[Record]) -> list[tuple[dict[str, str], list[Entry]]]:
    """The records grouped into streams: (labels, [(unix ns, line, metadata)])."""
    grouped: dict[tuple[str, ...], list[Entry]] = {}
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
        grouped.setdefault(key, []).append((unix_nanos(r), _text(r.get("message", "")), meta))
    return [
        ({"project": project, **dict(zip(LABELS, key, strict=True))}, entries)
        for key, entries in grouped.items()
    ]


def push_body(project: str, records: list[Record]) -> bytes:
    """The JSON push body."""
    body = {
        "streams": [
            {
                "stream": labels,
                "values": [
                    [str(ns), line, meta] if meta else [str(ns), line] for ns, line, meta in entries
                ],
            }
            for labels, entries in streams(project, records)
        ]
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class Loki(Sink):
    kind = "loki"

    def __init__(self, name: str, project: str, options: Options) -> None:
        super().__init__(name, project)
        self.poster = Poster(joined(options.url, PATH), options.headers)
        self.protobuf = options.format == "protobuf"
        if self.protobuf:
            from corral.logs.forward import lokiproto

            self._proto = lokiproto.Encoder()

    def send(self, records: list[Record]) -> None:
        if self.protobuf:
            body = self._proto.push_body(streams(self.project, records))
            self.poster.post(body, "application/x-protobuf")
        else:
            self.poster.post(push_body(self.project, records), "application/json")

    def close(self) -> None:
        self.poster.close()


def make(name: str, project: str, options: Any) -> Sink:
    return Loki(name, project, options)
