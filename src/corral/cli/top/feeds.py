"""The daemon's endless replies (state events, an agent's log records) read in threads of
their own, since the client's sockets block; each stops from any thread at once.

A feed's client keeps the sockets it opened, and ``close`` shuts them: the read blocked in
the feed's thread returns empty, its stream ends, and the thread with it.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from corral.api.client import Client
from corral.errors import CorralError, DaemonNotRunning

GONE = ("the corral daemon went away ('corral down', or it died)",
        "start it with 'corral up -d' (the daemon log in the state dir says why it ended)")


class _Closable(Client):
    """The daemon's client, whose open connections ``close`` shuts from any thread."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(socket_path, timeout=None)
        self.closed = False
        self._open: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = super()._connect(timeout)
        self._open.add(sock)
        if self.closed:  # closed while this one was connecting
            self._shut(sock)
        return sock

    def close(self) -> None:
        self.closed = True
        for sock in list(self._open):
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class Feed:
    """``read(client)`` in a daemon thread; ``ended(problem)`` when it stops by itself (the
    daemon closed the stream or refused it), never after ``close``."""

    def __init__(self, socket_path: str, read: Callable[[Client], None],
                 ended: Callable[[CorralError], None], name: str) -> None:
        self._client = _Closable(socket_path)
        self._read, self._ended = read, ended
        self._thread = threading.Thread(target=self._run, name=f"corral-top-{name}",
                                        daemon=True)

    def start(self) -> Feed:
        self._thread.start()
        return self

    def _run(self) -> None:
        problem: CorralError | None = None
        try:
            self._read(self._client)
        except CorralError as exc:
            problem = exc
        except OSError as exc:
            problem = CorralError(f"the daemon's stream broke: {exc}", "run 'corral top' again")
        if not self._client.closed:
            self._ended(problem or DaemonNotRunning(*GONE))

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        self._client.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)


def fleet_states(deliver_rows: Callable[[list[dict[str, Any]]], None],
                 deliver_row: Callable[[dict[str, Any]], None]) -> Callable[[Client], None]:
    """Every instance's row, then each state change as it comes: subscribed first, so no
    change falls between the two."""

    def read(client: Client) -> None:
        live = client.events()
        try:
            deliver_rows(client.instances())
            for event in live:
                if event["event"] == "state":
                    deliver_row(event["data"])
        finally:
            live.close()  # type: ignore[attr-defined]  # a generator

    return read


def agent_logs(agent: str, tail: int,
               deliver: Callable[[list[dict[str, Any]]], None]) -> Callable[[Client], None]:
    """The agent's last ``tail`` records, then each new one, as ``corral logs -f`` shows them:
    the stream is subscribed before the history is read, so the records written in between
    come first on the stream and again in the history; the stream's records older than the
    history's last, or of its time and in it, are dropped until the first newer one (and
    compared up to then only, so a burst costs no more than its records)."""

    def read(client: Client) -> None:
        from corral.logs.query import stamp

        live = client.events(logs=True, agents=[agent])
        try:
            overlap = list(_records(client.log_lines([agent], tail=tail)))
            deliver(overlap)
            last = stamp(overlap[-1]) if overlap else -math.inf
            for event in live:
                if event["event"] != "log":
                    continue
                rec = event["data"]
                if overlap:
                    at = stamp(rec)
                    if at < last or (at == last and rec in overlap):
                        continue
                    overlap = []
                deliver([rec])
        finally:
            live.close()  # type: ignore[attr-defined]  # a generator

    return read


def _records(lines: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    return (json.loads(line) for line in lines if line.strip())


class Inbox:
    """Items a thread hands to the app's loop: ``put`` says whether the app must be woken
    (the inbox was empty), ``take`` empties it. A burst of records costs the app one wake-up,
    not one a record."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._lock = threading.Lock()

    def put(self, items: list[Any]) -> bool:
        if not items:
            return False
        with self._lock:
            wake = not self._items
            self._items.extend(items)
        return wake

    def take(self) -> list[Any]:
        with self._lock:
            items, self._items = self._items, []
        return items
