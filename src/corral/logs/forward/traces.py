"""OTLP traces, lightly: the fleet's lifecycle as spans (``otlp: {traces: true}``).

From the fleet's events (``runtime.journal``) the forwarder makes one span per instance
start (from ``starting`` to ``running``, or to the state it failed in), stop (``stopping``
to its end), restart (the restart event to running again), fatal end and probe verdict
(``healthy``/``unhealthy``), each named ``start AGENT`` and so on, with the instance, states,
reason and exit code as attributes and an error status where it failed. An instance's spans
share a trace from a start out of a rest (stopped, exited, fatal, new) until the next such
start. They are queued and sent like the records (their own queue, ENDPOINT/v1/traces).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from corral.logs.forward import protobuf as pb
from corral.logs.forward.base import Record, Sink
from corral.logs.forward.http import Poster, joined
from corral.logs.forward.otlp import PROTOBUF, SCOPE, resource

Span = dict[str, Any]
_RESTING = ("created", "stopped", "exited", "fatal")
_FAILED = ("fatal", "backoff", "blocked")


class Spans:
    """Turns events into finished spans (JSON-able dicts), keeping what is under way."""

    def __init__(self, project: str) -> None:
        self.project = project
        self._trace: dict[str, str] = {}
        self._since: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    def _trace_of(self, instance: str, new: bool = False) -> str:
        if new or instance not in self._trace:
            seed = f"{self.project}/{instance}/{os.urandom(8).hex()}"
            self._trace[instance] = hashlib.sha256(seed.encode()).hexdigest()[:32]
        return self._trace[instance]

    def feed(self, event: dict[str, Any]) -> list[Span]:
        kind, instance = event.get("event"), event.get("instance")
        if not isinstance(instance, str) or not isinstance(event.get("time"), int | float):
            return []
        now, state, previous = float(event["time"]), event.get("state"), event.get("previous")
        out: list[Span] = []
        if kind == "state":
            if state == "starting":
                self._trace_of(instance, new=previous in _RESTING)
                self._since[(instance, "start")] = (now, event)
            elif previous == "starting":
                out += self._end(instance, "start", now, event, failed=state in _FAILED)
            if state == "running":
                out += self._end(instance, "restart", now, event, failed=False)
            if state == "stopping":
                self._since[(instance, "stop")] = (now, event)
            elif previous == "stopping":
                out += self._end(instance, "stop", now, event, failed=False)
        elif kind == "restart":
            out += self._end(instance, "start", now, event, failed=True)
            self._since[(instance, "restart")] = (now, event)
        elif kind in ("fatal", "oom"):
            out += self._end(instance, "start", now, event, failed=True)
            out.append(self._span(instance, kind, now, now, event, failed=True))
        elif kind in ("healthy", "unhealthy"):
            out.append(self._span(instance, "probe", now, now, event, failed=kind == "unhealthy"))
        return out

    def _end(
        self, instance: str, what: str, now: float, event: dict[str, Any], *, failed: bool
    ) -> list[Span]:
        begun = self._since.pop((instance, what), None)
        if begun is None:
            return []
        first = begun[1]
        if what == "restart":  # the restart's own reason, not the running state's
            event = {**event, "reason": first.get("reason"), "exit_code": first.get("exit_code")}
        return [self._span(instance, what, begun[0], now, event, failed=failed)]

    def _span(
        self,
        instance: str,
        what: str,
        start: float,
        end: float,
        event: dict[str, Any],
        *,
        failed: bool,
    ) -> Span:
        attrs = {
            "corral.instance": instance,
            "corral.agent": event.get("agent", ""),
            "corral.state": event.get("state"),
            "corral.previous": event.get("previous"),
            "corral.restarts": event.get("restarts"),
        }
        if what == "probe":
            attrs["corral.health"] = event.get("event")
        for key in ("reason", "exit_code", "exit_signal"):
            if event.get(key) is not None:
                attrs[f"corral.{key}"] = event[key]
        return {
            "trace": self._trace_of(instance),
            "id": os.urandom(8).hex(),
            "name": f"{what} {event.get('agent', instance)}",
            "agent": event.get("agent", ""),
            "instance": instance,
            "start": int(start * 1e9),
            "end": int(end * 1e9),
            "error": failed,
            "message": str(event.get("reason") or ""),
            "attributes": {k: v for k, v in attrs.items() if v is not None},
        }


def span(s: Span) -> bytes:
    status = pb.string(2, s["message"]) + pb.uint(3, 2) if s["error"] else pb.uint(3, 1)
    return b"".join(
        (
            pb.message(1, bytes.fromhex(s["trace"])),
            pb.message(2, bytes.fromhex(s["id"])),
            pb.string(5, s["name"]),
            pb.uint(6, 1),  # SPAN_KIND_INTERNAL
            pb.fixed64(7, s["start"]),
            pb.fixed64(8, max(s["end"], s["start"])),
            *(pb.key_value(9, k, v) for k, v in s["attributes"].items()),
            pb.message(15, status),
        )
    )


def export_spans(project: str, spans: list[Span]) -> bytes:
    by_instance: dict[tuple[str, str], list[bytes]] = {}
    for s in spans:
        by_instance.setdefault((s["agent"], s["instance"]), []).append(pb.message(2, span(s)))
    return b"".join(
        pb.message(
            1,
            pb.message(1, resource(project, agent, instance))
            + pb.message(2, SCOPE + b"".join(body)),
        )
        for (agent, instance), body in by_instance.items()
    )


def encoded(spans: list[Span]) -> bytes:
    return b"".join(json.dumps(s, separators=(",", ":")).encode() + b"\n" for s in spans)


class OtlpTraces(Sink):
    kind = "otlp"

    def __init__(self, name: str, project: str, endpoint: str, headers: dict[str, str]) -> None:
        super().__init__(name, project)
        self.poster = Poster(joined(endpoint, "/v1/traces"), headers)

    def send(self, records: list[Record]) -> None:
        self.poster.post(export_spans(self.project, records), PROTOBUF)

    def close(self) -> None:
        self.poster.close()
