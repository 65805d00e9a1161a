"""Elasticsearch's bulk API: ``POST URL/_bulk`` with NDJSON, a ``create`` action (which data
streams need too) and the record for each, ``@timestamp`` added. A bulk answer may take some
records and not others: those refused with 429 or 5xx are sent again, the rest counted as
rejected (a mapping conflict will not pass on a second try)."""

from __future__ import annotations

import json
from typing import Any

from corral.logs.forward.base import Record, Rejected, Retry, Sink
from corral.logs.forward.http import Poster, joined
from corral.manifest.spec import ElasticsearchSink as Options


class Elasticsearch(Sink):
    kind = "elasticsearch"

    def __init__(self, name: str, project: str, options: Options) -> None:
        super().__init__(name, project)
        self.poster = Poster(joined(options.url, "/_bulk"), options.headers)
        self.action = json.dumps({"create": {"_index": options.index}}).encode() + b"\n"

    def body(self, records: list[Record]) -> bytes:
        out = []
        for r in records:
            doc = {"@timestamp": r.get("timestamp"), "project": self.project, **r}
            out.append(self.action)
            out.append(json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode())
            out.append(b"\n")
        return b"".join(out)

    def send(self, records: list[Record]) -> None:
        while records:
            reply = self.poster.post(self.body(records), "application/x-ndjson")
            try:
                answer = json.loads(reply)
            except ValueError:
                raise Retry(f"the bulk answer is not JSON: {reply[:100]!r}") from None
            if not answer.get("errors"):
                return
            again, refused = [], []
            for record, item in zip(records, answer.get("items", []), strict=False):
                result: dict[str, Any] = (
                    next(iter(item.values()), {}) if isinstance(item, dict) else {}
                )
                status = int(result.get("status", 200))
                if status == 429 or status >= 500:
                    again.append(record)
                elif status >= 300:
                    refused.append(str(result.get("error", status))[:200])
            if again and len(again) == len(records):
                raise Retry(f"the bulk request was refused for now ({len(again)} records)")
            if refused and not again:
                raise Rejected(f"{len(refused)} records: {refused[0]}")
            records = again

    def close(self) -> None:
        self.poster.close()


def make(name: str, project: str, options: Any) -> Sink:
    return Elasticsearch(name, project, options)
