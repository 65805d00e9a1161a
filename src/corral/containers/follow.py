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
from typing import Any

from corral.containers.engine import Engine
from corral.drivers.base import Output, Stream

_CHUNK = 1 << 16


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
    """``logs -f`` of one container: the engine keeps stdout and stderr apart for us."""

    def __init__(self, engine: Engine, container: str, output: Output, cursor: Cursor) -> None:
        self.engine = engine
        self.container = container
        self.output = output
        self.cursor = cursor
        self._proc: asyncio.subprocess.Process | None = None
        self.done: asyncio.Future[Any] | None = None

    async def start(self) -> None:
        args = ["logs", "-f"]
        self._proc = await asyncio.create_subprocess_exec(
            *self.engine.argv(*args, self.container), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self.done = asyncio.ensure_future(asyncio.gather(
            self._pump("stdout", self._proc.stdout), self._pump("stderr", self._proc.stderr),
            self._reap()))

    async def _reap(self) -> None:
        assert self._proc is not None
        await self._proc.wait()

    async def _pump(self, stream: Stream, reader: asyncio.StreamReader) -> None:
        skip = self.cursor.last[stream]  # handed on before the supervisor went away
        try:
            while True:
                chunk = await reader.read(_CHUNK)
                if not chunk:
                    break
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                    if not chunk:
                        continue
                self.output.feed(stream, chunk)
                self.cursor.last[stream] += len(chunk)
                self.cursor.save()
        finally:
            self.output.eof(stream)

    async def finish(self, timeout: float = 5.0) -> None:
        """Wait for the engine to end the stream (it does once the container stopped)."""
        if self.done is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.done), timeout)
        except TimeoutError:
            self.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.done

    def cancel(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
