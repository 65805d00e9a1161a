"""The two small synchronisation objects every runner owns, sized for hundreds of runners.

``asyncio.Queue`` builds three deques and an ``Event`` (one more deque) on creation, ~2.3 KB
before anything is queued; a runner had two queues and an event, and each wait spawned a task
per source. At 500 idle instances that was ~4 MB of the daemon's resident memory (benchmark S2,
measured with tracemalloc). These hold a list and at most one future, created only while
someone waits, and a runner selects over them with plain futures, no tasks.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Mailbox(Generic[T]):
    """A FIFO with a single reader (the runner that owns it)."""

    __slots__ = ("_items", "_ready")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._ready: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        self._items.append(item)
        ready, self._ready = self._ready, None
        if ready is not None and not ready.done():
            ready.set_result(None)

    def pop(self) -> T:
        return self._items.pop(0)

    def ready(self) -> asyncio.Future[None]:
        """A future that is done once an item is waiting (already done if one is). Waiting on
        it takes nothing out: ``pop`` does."""
        if self._ready is None or self._ready.done():
            self._ready = asyncio.get_running_loop().create_future()
            if self._items:
                self._ready.set_result(None)
        return self._ready

    async def get(self) -> T:
        while not self._items:
            await self.ready()
        return self.pop()


class Flag:
    """``asyncio.Event`` without the deque it allocates up front: waiters share one future."""

    __slots__ = ("_is_set", "_waiter")

    def __init__(self) -> None:
        self._is_set = False
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._is_set

    def set(self) -> None:
        self._is_set = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._is_set = False

    async def wait(self) -> None:
        """Until ``set``; like ``Event.wait`` it returns even if cleared again meanwhile."""
        if self._is_set:
            return
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_future()
        # shielded: one waiter cancelled must not cancel the future the others share
        await asyncio.shield(self._waiter)


def any_done(*futures: asyncio.Future[Any]) -> asyncio.Future[None]:
    """A future done as soon as one of ``futures`` is (nothing is consumed or cancelled).

    ``asyncio.wait(..., FIRST_COMPLETED)`` does the same with a set and two coroutines per
    call; a runner spends its whole idle life in one such wait, so this is per instance."""
    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if any(f.done() for f in futures):
        woken.set_result(None)
        return woken
    _Wake(woken, futures)
    return woken


# The callbacks below touch no context variable: one empty context serves them all, instead
# of the copy of the current one asyncio makes for every callback (one per future per wait).
_NO_CONTEXT = contextvars.Context()


class _Wake:
    """Hooked on each awaited future until ``woken`` is done (or cancelled), then unhooked."""

    __slots__ = ("futures", "woken")

    def __init__(self, woken: asyncio.Future[None], futures: tuple[asyncio.Future[Any], ...]):
        self.woken, self.futures = woken, futures
        for f in futures:
            f.add_done_callback(self.wake, context=_NO_CONTEXT)
        woken.add_done_callback(self.unhook, context=_NO_CONTEXT)

    def wake(self, _: object) -> None:
        if not self.woken.done():
            self.woken.set_result(None)

    def unhook(self, _: object) -> None:
        for f in self.futures:
            f.remove_done_callback(self.wake)
