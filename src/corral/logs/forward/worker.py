"""The forwarder process: ``python -m corral.logs.forward STATE_DIR``.

Reads ``STATE_DIR/forward/config.json`` (the project and ``logs.forward``, written by the
daemon), then until SIGTERM or the end of its stdin (the daemon went away): tails the logs
into each sink's queue, runs a sender per sink, turns the events the daemon writes to its
stdin into spans for the sinks with traces, and writes JSON lines to its stdout: events
(``{"event": ...}``) as they happen and its counters (``{"stats": ...}``) every second.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from corral.logs.forward.base import Sender, Sink, Stats, parse
from corral.logs.forward.spool import Spool
from corral.logs.forward.tail import READ, Tail
from corral.manifest import decode
from corral.manifest.spec import ForwardTarget, sink_names

MIN_READ = 64 * 1024  # the tail waits for this much room in the queues of the sinks up
POLL = 0.1  # seconds between looks at the log files when nothing new was there
TRACE_QUEUE = 16 * 1024 * 1024
MODULES = {
    "otlp": "otlp",
    "loki": "loki",
    "elasticsearch": "elasticsearch",
    "syslog": "syslog",
    "fluent": "fluent",
}


def config_file(state_dir: str) -> str:
    return os.path.join(state_dir, "forward", "config.json")


class Out:
    """Lines to the daemon, one writer at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                pass  # the daemon is gone: stdin's end stops us


class Lane:
    """One queue and its sender."""

    def __init__(self, name: str, kind: str, spool: Spool, sender: Sender, stats: Stats):
        self.name, self.kind, self.spool, self.sender, self.stats = name, kind, spool, sender, stats
        self.full = False


def make_sink(target: ForwardTarget, name: str, project: str) -> Sink:
    module = importlib.import_module(f"corral.logs.forward.{MODULES[target.kind]}")
    sink: Sink = module.make(name, project, getattr(target, target.kind))
    return sink


class Worker:
    def __init__(self, state_dir: str) -> None:
        from corral.paths import StateLayout

        self.root = os.path.join(state_dir, "forward")
        with open(config_file(state_dir)) as f:
            config = json.load(f)
        self.project = str(config["project"])
        self._stdin = _lines(0)
        secret: dict[str, dict[str, str]] = {}
        if config.get("secret_headers"):  # the daemon's first line: never on disk
            secret = json.loads(next(self._stdin, b"{}") or b"{}").get("headers", {})
        targets = decode.forward_targets(config["targets"])
        self.out = Out()
        self.stopping = threading.Event()
        self.lanes: list[Lane] = []
        self.traces: list[Lane] = []
        for target, name in zip(targets, sink_names(targets), strict=True):
            if name in secret:
                options = getattr(target, target.kind)
                options = dataclasses.replace(options, headers={**options.headers, **secret[name]})
                target = dataclasses.replace(target, **{target.kind: options})
            try:
                sink = make_sink(target, name, self.project)
            except ImportError as exc:  # fluent without msgpack, loki protobuf without cramjam
                self.out(
                    {
                        "event": "forward_unavailable",
                        "sink": name,
                        "what": "logs",
                        "reason": f"{name}: {exc.name or exc} is not installed: pip install "
                        "'corral[forward]' and run 'corral up' again",
                    }
                )
                continue
            self.lanes.append(self._lane(name, "logs", target.queue, target.batch, sink))
            if target.otlp is not None and target.otlp.traces:
                from corral.logs.forward.traces import OtlpTraces

                endpoint = target.otlp.endpoint.rstrip("/").removesuffix("/v1/logs")
                sink = OtlpTraces(name, self.project, endpoint, target.otlp.headers)
                self.traces.append(self._lane(name, "traces", TRACE_QUEUE, target.batch, sink))
        self._forget(set(sink_names(targets)))
        self.tail = Tail(StateLayout(state_dir).logs, os.path.join(self.root, "cursor.json"))

    def _forget(self, names: set[str]) -> None:
        """The queues of sinks no longer configured (their records go nowhere now)."""
        import shutil

        for entry in os.listdir(self.root):
            path = os.path.join(self.root, entry)
            if entry not in names and os.path.isdir(os.path.join(path, "logs")):
                shutil.rmtree(path, ignore_errors=True)

    def _lane(self, name: str, what: str, queue: int, batch: int, sink: Sink) -> Lane:
        spool = Spool(os.path.join(self.root, name, what), queue)
        stats = Stats()
        sender = Sender(sink, spool, batch, stats, self.out, self.stopping, what=what, decode=parse)
        return Lane(name, sink.kind, spool, sender, stats)

    def run(self) -> int:
        for lane in (*self.lanes, *self.traces):
            lane.sender.start()
        threading.Thread(target=self._events, name="forward-events", daemon=True).start()
        reported = 0.0
        while not self.stopping.is_set():
            moved = False
            # a sink that is up but behind holds the tail back: the stored files wait
            room, want = self._room()
            for agent, data in self.tail.poll(min(READ, room)) if room >= want else ():
                moved = True
                for lane in self.lanes:
                    self._queue(lane, agent, data)
                if self._room()[0] < want:
                    break
            for agent in self.tail.lost:
                self.out(
                    {
                        "event": "forward_lost",
                        "sink": "",
                        "what": "logs",
                        "reason": f"the stored log of {agent} rotated away before it was "
                        "read: its records since the last forwarded one are lost",
                    }
                )
            self.tail.lost.clear()
            if moved:
                self.tail.save()
            if time.monotonic() - reported >= 1.0:
                reported = time.monotonic()
                self._report()
            if not moved:
                self.stopping.wait(POLL)
        for lane in (*self.lanes, *self.traces):
            lane.spool.close()
        for lane in (*self.lanes, *self.traces):
            lane.sender.join(15)
        self.tail.save()
        self.tail.close()
        self._report()
        return 0

    def _room(self) -> tuple[int, int]:
        """What the queues of the sinks that are up can take now, and the least worth a
        read. A sink slower than the agents' output holds the tail back (the stored files
        are the buffer then); a sink that is down does not: its queue fills, then drops
        (``_queue``), and the others go on."""
        up = [lane.spool for lane in self.lanes if lane.stats.up]
        if not up:
            return READ, 1
        return (
            min(q.max_bytes - q.bytes for q in up),
            min(min(MIN_READ, q.max_bytes // 2) for q in up),
        )

    def _queue(self, lane: Lane, agent: str, data: bytes) -> None:
        dropped = lane.spool.append(data)
        if dropped:
            lane.stats.dropped += dropped
            if not lane.full:
                lane.full = True
                self.out(
                    {
                        "event": "forward_queue_full",
                        "sink": lane.name,
                        "what": "logs",
                        "reason": f"{lane.name}: its queue is full ({lane.spool.max_bytes} "
                        f"bytes): {dropped} records of {agent} dropped, and the "
                        "newest records are dropped until it drains",
                    }
                )
        elif lane.full and lane.spool.bytes < lane.spool.max_bytes * 0.9:
            lane.full = False
            self.out(
                {
                    "event": "forward_queue_ok",
                    "sink": lane.name,
                    "what": "logs",
                    "reason": f"{lane.name}: its queue has room again "
                    f"({lane.stats.dropped} records dropped in all)",
                }
            )

    def _report(self) -> None:
        stats = {}
        for lane in self.lanes:
            traces = next((t for t in self.traces if t.name == lane.name), None)
            stats[lane.name] = {
                "kind": lane.kind,
                "sent": lane.stats.sent,
                "dropped": lane.stats.dropped,
                "rejected": lane.stats.rejected,
                "failures": lane.stats.failures,
                "up": lane.stats.up,
                "queue_bytes": lane.spool.bytes,
                "queue_records": lane.spool.records,
                "queue_limit": lane.spool.max_bytes,
                "spans_queued": traces.spool.records if traces else 0,
            }
        self.out({"stats": stats})

    def _events(self) -> None:
        """The daemon's lifecycle events (one JSON object a line); their end is ours."""
        from corral.logs.forward.traces import Spans, encoded

        spans = Spans(self.project)
        for line in self._stdin:
            if not self.traces:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            made = spans.feed(event) if isinstance(event, dict) else []
            if made:
                data = encoded(made)
                for lane in self.traces:
                    lane.stats.dropped += lane.spool.append(data)
        self.stopping.set()


def _lines(fd: int) -> Iterator[bytes]:
    """Lines read from ``fd`` with plain reads (no buffered reader of sys.stdin, whose lock a
    thread still blocked in it holds while the interpreter shuts down), until its end."""
    rest = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        *lines, rest = (rest + data).split(b"\n")
        yield from lines


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m corral.logs.forward STATE_DIR", file=sys.stderr)
        return 2
    worker = Worker(argv[0])
    signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stopping.set())
    return worker.run()
