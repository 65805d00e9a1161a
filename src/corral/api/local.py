"""The in-process end of the fleet protocol: a supervisor running inside the caller's process.

For scripts, notebooks and tests that want a fleet without a daemon::

    with LocalFleet(".corral") as fleet:
        fleet.apply(load("corral.yaml"))
        fleet.wait()
        print(fleet.instances())

The supervisor and the daemon's own ``Api`` router run on an event loop in a background
thread; each call is the same route the daemon serves, handed over in memory instead of over
the socket, so both ends answer alike (the contract tests run one scenario against both).
Leaving the ``with`` block stops the fleet. Unlike the daemon, this process is not made a
child subreaper and nothing outlives it: agents are stopped when the fleet is closed.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from corral.api.calls import FleetCalls, decode, stream_error
from corral.api.http import Reply, Request
from corral.api.server import Api
from corral.runtime.events import EventBus
from corral.runtime.store import Store
from corral.runtime.supervisor import Supervisor

_END = object()


class LocalFleet(FleetCalls):
    def __init__(self, state_dir: str, *, timeout: float = 600.0) -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.timeout = timeout
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="corral-fleet",
                                        daemon=True)
        self._thread.start()
        self._closed = False
        self._api: Api = self._call(self._boot())

    async def _boot(self) -> Api:
        from corral import paths

        self._store = Store(paths.store_file(self.state_dir))
        self._sup = Supervisor(self.state_dir, store=self._store, events=EventBus())
        await self._sup.recover()
        return Api(self._sup, shutdown=lambda _fleet_too: None)

    def _call(self, coro: Any, timeout: float | None = None) -> Any:
        if self._closed:
            raise RuntimeError("this LocalFleet is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(
            timeout if timeout is not None else self.timeout)

    @staticmethod
    def _request(method: str, path: str, body: Any) -> Request:
        import json

        url = urlsplit(path)
        payload = b"" if body is None else json.dumps(body).encode()
        return Request(method, url.path, parse_qs(url.query, keep_blank_values=True), payload)

    def request(self, method: str, path: str, body: Any = None,
                timeout: float | None = None) -> Any:
        reply = self._call(self._api(self._request(method, path, body)), timeout)
        if not isinstance(reply, Reply):  # a stream asked for as one reply: gather it
            return b"".join(self._iterate(reply.chunks))
        return decode(reply.status, reply.content_type, reply.body)

    def lines(self, method: str, path: str, body: Any = None) -> Iterator[bytes]:
        """Like ``Client.lines``: the route has run (and subscribed) before this returns."""
        reply = self._call(self._api(self._request(method, path, body)))
        if isinstance(reply, Reply):
            if reply.status >= 400:
                raise stream_error(reply.status, reply.body)
            return iter(reply.body.splitlines())
        return self._split(self._iterate(reply.chunks))

    @staticmethod
    def _split(chunks: Iterator[bytes]) -> Iterator[bytes]:
        buf = b""
        for chunk in chunks:
            buf += chunk
            *complete, buf = buf.split(b"\n")
            yield from complete
        if buf:
            yield buf

    def _iterate(self, chunks: AsyncIterator[bytes]) -> Iterator[bytes]:
        """An async stream of the loop's, consumed from this thread; cancelled when the
        consumer stops. The hand-over queue is unbounded so the loop never blocks on it: the
        server side already bounds what one subscriber may hold back (``EventBus``)."""
        out: queue.SimpleQueue[object] = queue.SimpleQueue()

        async def pump() -> None:
            try:
                async for chunk in chunks:
                    out.put(chunk)
            finally:
                out.put(_END)

        task = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while (item := out.get()) is not _END:
                assert isinstance(item, bytes)
                yield item
        finally:
            task.cancel()

    def close(self) -> None:
        """Stop the fleet and the loop; idempotent."""
        if self._closed:
            return

        async def finish() -> None:
            await self._sup.down()
            await self._sup.close()
            self._store.close()

        self._call(finish())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> LocalFleet:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
