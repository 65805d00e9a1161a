"""A sink's sender against a real HTTP server (``tests.support.receivers``, decoding Loki's
native push: snappy block-compressed protobuf, parsed with a class built from the official
``push.proto``): a batch refused for now (503) is sent again with backoff and leaves the
queue only once taken; one refused for good (400) is dropped, counted and reported, and the
queue goes on."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from corral.logs.forward import base
from corral.logs.forward.base import Sender, Stats
from corral.logs.forward.loki import Loki
from corral.logs.forward.spool import Spool
from corral.manifest.spec import LokiSink
from tests.support.receivers import HttpReceiver


def _records(n: int) -> bytes:
    return b"".join(
        json.dumps(
            {
                "timestamp": "2026-12-02T14:03:05.123456Z",
                "agent": "web",
                "instance": "web.1",
                "stream": "stdout",
                "level": "info",
                "message": f"line {i}",
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


def _until(predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _sender(
    tmp_path: Path, receiver: HttpReceiver
) -> tuple[Sender, Spool, Stats, list[dict[str, Any]]]:
    spool = Spool(str(tmp_path / "q"), 1 << 20)
    stats, events = Stats(), []
    sink = Loki("loki", "proj", LokiSink(url=receiver.url))
    sender = Sender(sink, spool, 10, stats, events.append, threading.Event())
    return sender, spool, stats, events


def test_refused_for_now_is_sent_again_and_kept_until_taken(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr(base, "BACKOFF_FIRST", 0.05)
    receiver = HttpReceiver().start()
    try:
        receiver.refuse = 503
        sender, spool, stats, events = _sender(tmp_path, receiver)
        spool.append(_records(25))
        sender.start()
        _until(lambda: stats.failures >= 2)
        assert spool.records == 25 and not stats.up and receiver.got("loki") == []
        receiver.refuse = None
        _until(lambda: spool.records == 0)
        assert [r["line"] for r in receiver.got("loki")] == [f"line {i}" for i in range(25)]
        assert stats.sent == 25 and stats.up
        assert [e["event"] for e in events] == ["forward_sink_down", "forward_sink_up"]
        assert "HTTP 503" in events[0]["reason"]
    finally:
        sender.stopping.set()
        sender.join(10)
        receiver.stop()


def test_refused_for_good_is_dropped_counted_and_reported(tmp_path: Path) -> None:
    receiver = HttpReceiver().start()
    try:
        receiver.refuse = 400
        sender, spool, stats, events = _sender(tmp_path, receiver)
        spool.append(_records(15))
        sender.start()
        _until(lambda: spool.records == 0)
        assert stats.rejected == 15 and stats.sent == 0 and stats.failures == 0
        assert {e["event"] for e in events} == {"forward_rejected"}
        assert "HTTP 400" in events[0]["reason"]
    finally:
        sender.stopping.set()
        sender.join(10)
        receiver.stop()
