"""What every sink shares: the records as sinks see them, the errors a send ends in, and the
sender that takes batches from a sink's queue and retries with backoff."""

from __future__ import annotations

import calendar
import json
import random
import sys
import threading
import time
import traceback
import typing
from collections.abc import Callable
from typing import Any

from corral.logs.fields import RESERVED
from corral.logs.forward.spool import Spool

Record = dict[str, Any]
Report = Callable[[dict[str, Any]], None]

BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
SEVERITY = {"debug": 5, "info": 9, "warn": 13, "error": 17, "fatal": 21}  # OTLP numbers
_BASE = frozenset(RESERVED)


class Retry(Exception):
    """The sink did not take the batch this time (down, refused for now): send it again."""


class Rejected(Exception):
    """The sink refused the batch for good (its answer says the request is wrong): it is
    dropped, counted and reported, so one bad batch never holds the queue up."""


class Sink:
    """One configured sink. ``send`` delivers a batch or raises ``Retry``/``Rejected``."""

    kind = ""

    def __init__(self, name: str, project: str) -> None:
        self.name, self.project = name, project

    def send(self, records: list[Record]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Let go of connections (the sender's thread calls it as it ends)."""


def fields(record: Record) -> dict[str, Any]:
    """A record's own fields: every key but corral's."""
    return {k: v for k, v in record.items() if k not in _BASE}


_seconds: dict[str, int] = {}


def unix_nanos(record: Record) -> int:
    """The record's ``timestamp`` (``2026-12-02T14:03:05.123456Z``, or unix seconds in
    older files) in nanoseconds; the date part is parsed once per second."""
    ts = record.get("timestamp")
    if isinstance(ts, str) and len(ts) == 27 and ts[19] == ".":
        whole = _seconds.get(ts[:19])
        if whole is None:
            if len(_seconds) > 4096:
                _seconds.clear()
            whole = _seconds[ts[:19]] = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
        return whole * 1_000_000_000 + int(ts[20:26]) * 1000
    from corral.logs.stamps import seconds

    found = seconds(ts)
    return int((found if found is not None else time.time()) * 1e9)


def parse(batch: bytes) -> list[Record]:
    """The records of a batch of JSON lines: one ``json.loads`` of the batch as an array
    (JSON escapes every newline inside a string, so each one ends a record); when a line is
    damaged (the file's own, not ours), line by line, skipping it."""
    try:
        found = json.loads(b"[" + batch.rstrip(b"\n").replace(b"\n", b",") + b"]")
        if all(type(r) is dict for r in found):
            return typing.cast(list[Record], found)
    except ValueError:
        pass
    out = []
    for line in batch.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


class Stats:
    """One sink's counters, reported to the daemon (``/metrics``)."""

    __slots__ = ("dropped", "failures", "rejected", "sent", "up")

    def __init__(self) -> None:
        self.sent = self.dropped = self.rejected = self.failures = 0
        self.up = True


class Sender(threading.Thread):
    """Takes batches of ``sink.batch`` records from the queue, oldest first, until stopped.
    A failed send waits (0.5 s doubling to 30 s, with jitter) and tries the same batch
    again; a batch leaves the queue only once the sink took it."""

    def __init__(
        self,
        sink: Sink,
        spool: Spool,
        batch: int,
        stats: Stats,
        report: Report,
        stopping: threading.Event,
        *,
        what: str = "logs",
        decode: Callable[[bytes], list[Any]] = parse,
    ) -> None:
        super().__init__(name=f"forward-{sink.name}-{what}", daemon=True)
        self.sink, self.spool, self.batch, self.stats = sink, spool, batch, stats
        self.report, self.stopping, self.what, self.decode = report, stopping, what, decode

    def run(self) -> None:
        delay = BACKOFF_FIRST
        try:
            while not self.stopping.is_set():
                try:
                    delay = self._once(delay)
                except OSError as exc:  # the queue's files (a full disk): try again later
                    self._event("forward_queue_error", f"its queue: {exc}")
                    self.stopping.wait(BACKOFF_MAX)
        finally:
            self.sink.close()

    def _once(self, delay: float) -> float:
        """One batch sent, or tried; the backoff for the next one."""
        data, position = self.spool.peek(self.batch)
        if not data:
            self.spool.wait(0.5)
            return delay
        try:
            try:
                self.sink.send(self.decode(data))
            except (Retry, Rejected):
                raise
            except Exception as exc:  # a record this sink cannot encode (a bug): not again
                traceback.print_exc(file=sys.stderr)
                raise Rejected(f"{type(exc).__name__}: {exc}") from None
        except Retry as exc:
            self.stats.failures += 1
            if self.stats.up:
                self.stats.up = False
                self._event(
                    "forward_sink_down",
                    f"{exc}; retrying with backoff, {self.spool.records} records queued",
                )
            self.stopping.wait(delay * random.uniform(0.8, 1.2))
            return min(delay * 2, BACKOFF_MAX)
        except Rejected as exc:
            n = data.count(b"\n")
            self.stats.rejected += n
            self._event("forward_rejected", f"{n} records refused for good: {exc}")
        else:
            if self.what == "logs":
                self.stats.sent += data.count(b"\n")
        self.spool.commit(position, data)
        if not self.stats.up:
            self.stats.up = True
            self._event("forward_sink_up", f"sending again, {self.spool.records} records queued")
        return BACKOFF_FIRST

    def _event(self, kind: str, reason: str) -> None:
        self.report(
            {
                "event": kind,
                "sink": self.sink.name,
                "kind": self.sink.kind,
                "what": self.what,
                "reason": f"{self.sink.name}: {reason}",
            }
        )
