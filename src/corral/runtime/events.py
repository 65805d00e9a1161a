"""The event bus: state changes fan out to API streams and metrics.

Each subscriber has a bounded queue; a subscriber too slow to keep up loses the oldest events
and is told how many it lost, so one stuck client never grows the daemon's memory.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

Event = dict[str, Any]


class Subscription:
    def __init__(self, bus: EventBus, size: int) -> None:
        self._bus = bus
        self.queue: asyncio.Queue[Event] = asyncio.Queue(size)
        self.lost = 0

    def offer(self, event: Event) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.lost += 1
        self.queue.put_nowait(event)

    async def get(self) -> Event:
        event = await self.queue.get()
        if self.lost:
            event = {**event, "lost_before": self.lost}
            self.lost = 0
        return event

    def close(self) -> None:
        self._bus.unsubscribe(self)


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []

    def subscribe(self, size: int = 10_000) -> Subscription:
        sub = Subscription(self, size)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, event: Event) -> None:
        if not self._subs:
            return
        event.setdefault("timestamp", time.time())
        for sub in self._subs:
            sub.offer(event)
