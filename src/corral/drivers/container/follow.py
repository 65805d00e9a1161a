"""A container's output, followed from the engine's own log into the driver's ``Output``.

The engine (conmon for Podman, dockerd's json-file for Docker) keeps writing a container's
output to its log whether or not corral is alive, so nothing is lost while the supervisor is
away: the process driver's named pipes play the same part. How much of each stream has been
handed on is a byte count kept in a small file in the instance's run dir; a re-adopting
supervisor follows the log from its start again and skips exactly that many bytes, so lines
are neither lost nor repeated. (Bytes whose feed and count update are cut apart by a SIGKILL
are the one exception: they can repeat once, the same window the process driver has between
read and frame.)

Why bytes and not the engines' ``--timestamps``/``--since``: Podman's follow mode prints a
partial line (an unbuffered ``print`` writes the text and its newline separately) as two
timestamped pieces, which cannot be told apart from the agent's own text; without timestamps
both engines join the pieces back into the agent's exact bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from typing import Any

from corral.drivers.base import Output, Stream
from corral.drivers.container.transport.base import LogStream


class Cursor:
    """Per stream, how many bytes of the engine's log were handed on; kept in a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.last: dict[str, int] = {"stdout": 0, "stderr": 0}
        with contextlib.suppress(OSError, ValueError), open(path) as fh:
            self.last.update({k: int(v) for k, v in json.load(fh).items()})

    def save(self) -> None:
        tmp = self.path + ".tmp"
        with contextlib.suppress(OSError):
            with open(tmp, "w") as fh:
                json.dump(self.last, fh)
            os.replace(tmp, self.path)


class Follower:
    """The engine's log of one container, from its start, less what the cursor says was
    handed on already. ``start`` returns at once: the log is the engine's, so attaching a
    moment after the container started loses nothing."""

    def __init__(self, logs: LogStream, output: Output, cursor: Cursor,
                 rest: Callable[[], LogStream] | None = None) -> None:
        self.logs = logs
        self.output = output
        self.cursor = cursor
        self._rest = rest  # the whole log, not followed: what ``finish`` may read instead
        self._then: LogStream | None = None
        self._skip = dict(cursor.last)  # handed on before the supervisor went away
        self.done: asyncio.Future[Any] | None = None

    async def start(self) -> None:
        self.done = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            await self.logs.pump(self._feed)
            if self._then is not None:  # the rest, past what was handed on
                self._skip = dict(self.cursor.last)
                await self._then.pump(self._feed)
        finally:
            self.output.eof("stdout")
            self.output.eof("stderr")

    def _feed(self, stream: Stream, chunk: bytes) -> None:
        skip = self._skip[stream]
        if skip:
            cut = min(skip, len(chunk))
            chunk, self._skip[stream] = chunk[cut:], skip - cut
            if not chunk:
                return
        self.output.feed(stream, chunk)
        self.cursor.last[stream] += len(chunk)
        self.cursor.save()

    async def finish(self, timeout: float = 5.0, *, quick: float | None = None) -> None:
        """Wait for the engine to end the stream (it does once the container stopped). With
        ``quick``: the container has exited, so its log is complete; if the follow has not
        ended within ``quick`` seconds (Podman notices an exit only at its next poll, up
        to ~0.5 s), it is dropped and the rest of the log read in one go."""
        if self.done is None:
            return
        if quick is not None and self._rest is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.done), quick)
                return
            except TimeoutError:
                self._then = self._rest()
                self.logs.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(self.done), timeout)
        except TimeoutError:
            self.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.done

    def cancel(self) -> None:
        self._rest = None
        if self._then is not None:
            self._then.cancel()
        self.logs.cancel()
