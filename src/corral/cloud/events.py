"""The fleet's lifecycle events to the cloud (``events: {sqs: QUEUE, sns: TOPIC}``).

The journal hands each event kept to ``EventPublisher.event``, which turns it into a message
(``message``: None for what is not sent) and appends it to an on-disk spool
(``logs.forward.spool``, bounded by ``events.spool`` bytes) and returns: the supervisor never
waits on the network. A sender task takes up to ``BATCH`` messages at a time and hands them to
the provider's worker (a short-lived process: the daemon imports no SDK), with corral's own
identity (``cloud.aws``); it commits them once sent, so a slow or down endpoint, or a daemon
restart, loses nothing (at least once), and retries with backoff up to ``BACKOFF_MAX``. A
spool full drops the newest messages, counted and said in the daemon's log.

What is sent (``events.kinds``, all by default): ``started``, ``completed`` (exit 0, with the
last artifacts upload's URL), ``failed`` (another exit), ``stopped``, ``restart``, ``fatal``,
``oom``, ``unhealthy``, ``healthy``, ``artifacts`` (each upload: URL, files, bytes, ok).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from corral.cloud.provider import CloudError, load
from corral.logs.forward.spool import Spool

BATCH = 100
BACKOFF_MAX = 30.0
_FIELDS = ("time", "agent", "instance", "state", "previous", "reason", "exit_code",
           "exit_signal", "restarts", "health")


def kind_of(event: Mapping[str, Any]) -> str | None:
    """The message kind a journal event is sent as, or None."""
    kind = event.get("event")
    if kind == "state":
        state = event.get("state")
        if state == "running":
            return "started"
        if state == "exited":
            return "completed" if event.get("exit_code") == 0 else "failed"
        if state == "stopped":
            return "stopped"
        return None
    if kind in ("restart", "fatal", "oom", "unhealthy", "healthy", "artifacts"):
        return str(kind)
    return None


class EventPublisher:
    def __init__(self, state_dir: str, project: str) -> None:
        self._dir = os.path.join(state_dir, "events-out")
        self._project = project
        self._settings: Any = None
        self._provider: Any = None
        self._spool: Spool | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._artifacts: dict[str, dict[str, Any]] = {}  # each instance's last upload
        self.sent = self.dropped = 0
        self.problem: str | None = None  # the last send's, until one succeeds

    def apply(self, events: Any, cloud: Any) -> None:
        """The manifest's ``events:`` (not None) and ``cloud.aws``, as they are now."""
        self._settings = events
        self._provider = load("aws", cloud.aws, self._project)
        if self._spool is None:
            self._spool = Spool(self._dir, events.spool)
        self._spool.max_bytes = events.spool
        if self._task is None:
            self._task = asyncio.ensure_future(self._send_loop())
        self._wake.set()

    def off(self) -> None:
        """``events:`` is gone from the manifest: nothing more is spooled."""
        self._settings = None

    def message(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        kind = kind_of(event)
        if kind == "artifacts" and event.get("instance"):
            self._artifacts[str(event["instance"])] = {
                k: event.get(k) for k in ("to", "ok", "files", "bytes", "time")}
        if kind is None or self._settings is None or kind not in self._settings.kinds:
            return None
        out: dict[str, Any] = {"project": self._project, "event": kind, "id": event.get("id")}
        out.update({k: event[k] for k in _FIELDS if event.get(k) is not None})
        if kind == "artifacts":
            out.update({k: event.get(k) for k in ("to", "ok", "files", "bytes", "why")})
        elif kind == "completed" and (up := self._artifacts.get(str(event.get("instance")))):
            out["artifacts"] = up
        return out

    def event(self, event: Mapping[str, Any]) -> None:
        """The journal's listener: spooled now, sent by the sender task."""
        found = self.message(event)
        if found is None or self._spool is None:
            return
        dropped = self._spool.append(json.dumps(found, separators=(",", ":")).encode() + b"\n")
        if dropped:
            self.dropped += dropped
            print(f"corral: events: the spool is full ({self._spool.max_bytes} bytes, the "
                  f"endpoint is slow or down); {self.dropped} events dropped so far",
                  file=sys.stderr, flush=True)
        self._wake.set()

    async def _send_loop(self) -> None:
        delay = 0.5
        while True:
            spool = self._spool
            assert spool is not None
            data, position = await asyncio.to_thread(spool.peek, BATCH)
            if not data:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 5.0)
                continue
            batch = [json.loads(line) for line in data.splitlines() if line]
            settings = self._settings
            if settings is None:  # events: removed: what waits stays for a later one
                await asyncio.sleep(1.0)
                continue
            try:
                await asyncio.to_thread(self._provider.publish, batch, settings.sqs,
                                        settings.sns)
            except CloudError as exc:
                if str(exc) != self.problem:
                    print(f"corral: events: {exc} (retrying; {spool.records} waiting)",
                          file=sys.stderr, flush=True)
                self.problem = str(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            spool.commit(position, data)
            self.sent += len(batch)
            self.problem, delay = None, 0.5

    async def stop(self, *, drain: float = 10.0) -> None:
        """What waits is sent for up to ``drain`` seconds (the rest stays spooled for the
        next daemon), then the sender stops."""
        if self._task is None:
            return
        spool = self._spool
        loop = asyncio.get_running_loop()
        end = loop.time() + drain
        while spool is not None and spool.records and loop.time() < end and \
                self.problem is None:
            await asyncio.sleep(0.1)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._task = None
        if spool is not None:
            spool.close()
            self._spool = None
