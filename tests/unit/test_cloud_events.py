"""``cloud.events.EventPublisher``: the journal's events become messages, wait in the spool
while the sender fails (nothing lost, retried with backoff), are bounded by ``events.spool``,
and survive a new publisher over the same state dir. The sender is a provider object here
(the real one, the AWS worker, is tested end to end in ``e2e/test_aws_events.py``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from corral.cloud.events import EventPublisher, kind_of
from corral.cloud.provider import CloudError
from corral.manifest.cloud import EVENT_KINDS


class Endpoint:
    """Fails its first ``down`` sends (a down endpoint), then takes every batch."""

    def __init__(self, down: int) -> None:
        self.down, self.got, self.tries = down, [], 0

    def publish(self, events: list[dict[str, Any]], sqs: str | None, sns: str | None) -> int:
        self.tries += 1
        if self.tries <= self.down:
            raise CloudError("events.sqs: q: EndpointConnectionError")
        self.got.extend(events)
        return len(events)


def _publisher(tmp: Path, endpoint: Endpoint, spool: int = 1 << 20) -> EventPublisher:
    pub = EventPublisher(str(tmp), "proj")
    settings = SimpleNamespace(sqs="q", sns=None, kinds=list(EVENT_KINDS), spool=spool)
    pub.apply(settings, SimpleNamespace(aws=SimpleNamespace()))
    pub._provider = endpoint
    return pub


def _state(instance: str, state: str, code: int | None = None, i: int = 0) -> dict[str, Any]:
    return {"id": i, "event": "state", "agent": instance.split(".")[0], "instance": instance,
            "state": state, "exit_code": code, "time": 1.0}


def test_kinds_map_state_changes_to_lifecycle_names() -> None:
    assert kind_of(_state("a.1", "running")) == "started"
    assert kind_of(_state("a.1", "exited", 0)) == "completed"
    assert kind_of(_state("a.1", "exited", 2)) == "failed"
    assert kind_of(_state("a.1", "starting")) is None
    assert kind_of({"event": "hook"}) is None
    assert kind_of({"event": "oom"}) == "oom"


def test_a_down_endpoint_loses_nothing_and_completed_carries_its_artifacts(
        tmp_path: Path) -> None:
    async def run() -> Endpoint:
        endpoint = Endpoint(down=2)
        pub = _publisher(tmp_path, endpoint)
        pub.event({"event": "artifacts", "agent": "a", "instance": "a.1",
                   "to": "s3://b/a.1/", "ok": True, "files": 2, "bytes": 9})
        for i in range(30):
            pub.event(_state("a.1", "exited", 0, i))  # returns at once: spooled
        for _ in range(200):
            if len(endpoint.got) == 31:
                break
            await asyncio.sleep(0.05)
        await pub.stop(drain=1)
        return endpoint

    endpoint = asyncio.run(run())
    assert endpoint.tries >= 3
    assert len(endpoint.got) == 31
    done = [m for m in endpoint.got if m["event"] == "completed"]
    assert [m["id"] for m in done] == list(range(30))
    assert done[0]["artifacts"]["to"] == "s3://b/a.1/" and done[0]["project"] == "proj"


def test_the_spool_is_bounded_and_outlives_its_publisher(tmp_path: Path) -> None:
    async def fill() -> EventPublisher:
        pub = _publisher(tmp_path, Endpoint(down=10_000), spool=2048)
        for i in range(100):
            pub.event(_state("a.1", "exited", 1, i))
        await pub.stop(drain=0)
        return pub

    pub = asyncio.run(fill())
    assert pub.dropped > 0  # the bound held

    async def resend() -> Endpoint:
        endpoint = Endpoint(down=0)
        again = _publisher(tmp_path, endpoint, spool=2048)
        for _ in range(200):
            if len(endpoint.got) == 100 - pub.dropped:
                break
            await asyncio.sleep(0.05)
        await again.stop(drain=1)
        return endpoint

    endpoint = asyncio.run(resend())
    assert [m["id"] for m in endpoint.got] == list(range(100 - pub.dropped))
