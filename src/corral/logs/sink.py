"""The log sink: raw output chunks in, JSON-lines records on disk, one file per agent.

``AgentLog`` owns ``<directory>/<agent>.log`` (O_APPEND, unbuffered: records are in the page
cache when ``feed`` returns; a SIGKILLed daemon loses nothing it wrote) and its rotation.
``InstanceOutput`` frames one instance's output: torn trailing lines, over-long lines, secrets.
Per chunk: one ``clock()``, one scan, one ``writev``; no per-line Python on the fast path (see
``records``). Subscribers and line listeners cost nothing unless registered.

Redaction guarantee: every occurrence of a secret, or of a form of it ``redact`` derives
(base64, hex, URL and JSON escaping), inside one line is replaced by ``***``, however the
chunks split it (lines are redacted once assembled, torn tails included); pieces of an
over-long line are never cut inside one. The daemon gives every output of a fleet the same
``Redactor``, so an agent printing a neighbour's secret is redacted too. Not covered:
secrets containing a newline, and what ``redact``'s docstring lists.
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

from corral.logs import stacks
from corral.logs.query import Dir, rotated_files
from corral.logs.records import (
    Buffer,
    LineEncoder,
    Scan,
    Stream,
    cut_point,
    new_counts,
    scan,
    segments,
)
from corral.logs.redact import Redactor

if TYPE_CHECKING:
    import asyncio
    from pathlib import Path

MAX_LINE = 64 * 1024
STACK_IDLE = 0.5  # seconds an unfinished stack waits for its next line before it is written
_IOV_MAX = 512
_TAIL = struct.Struct("<4sII")  # tail file: magic, len(stdout tail), len(stderr tail), data
_TAIL_MAGIC = b"CRT1"
_STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")

Subscriber = Callable[[bytes], None]
LineListener = Callable[[Stream, bytes], None]
_Out: TypeAlias = list[Buffer]  # encoded records of one feed, written with one writev
_Lines: TypeAlias = list[bytes] | None  # raw complete lines, when someone listens


_NO_SECRETS = Redactor()  # never added to: an output's own redact() makes a new one


def _discard(items: list[Any], item: object) -> None:
    if item in items:
        items.remove(item)


class AgentLog:
    """One agent's log file ``<directory>/<agent>.log``, shared by all its instances.

    Rotation: once the file reaches ``max_size`` it becomes ``agent.log.1`` (``.1`` -> ``.2``
    ...); at most ``keep`` rotated files stay, and rotated files last written more than
    ``max_age`` seconds ago are deleted (at rotation, at open, and on ``prune()``)."""

    def __init__(
        self, directory: Dir, agent: str, *, max_size: int = 16 * 1024 * 1024,
        keep: int = 5, max_age: float | None = None, clock: Callable[[], float] = time.time,
        max_line: int = MAX_LINE,
    ) -> None:  # fmt: skip
        # plain strings: pathlib (and the urllib.parse and ipaddress it imports) would stay
        # resident in the daemon for a handful of joins (benchmark S2)
        self._dir, self.agent = os.fspath(directory), agent
        self.max_size, self.keep, self.max_age = max_size, keep, max_age
        self.clock, self.max_line = clock, max_line
        os.makedirs(self._dir, exist_ok=True)
        self._path = os.path.join(self._dir, f"{agent}.log")
        self._subscribers: list[Subscriber] = []
        self._writers: weakref.WeakSet[InstanceOutput] = weakref.WeakSet()
        self.counts = new_counts()  # records written per level (records.LEVELS), all runs
        self._open()
        self.prune()

    @property
    def directory(self) -> Path:
        from pathlib import Path

        return Path(self._dir)

    @property
    def path(self) -> Path:
        from pathlib import Path

        return Path(self._path)

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(self._path, flags, 0o640)
        self._size = os.fstat(self._fd).st_size

    def writer(self, instance: str, *, tail_file: Dir | None = None) -> InstanceOutput:
        """A fresh output for one run of ``instance`` (a new run starts with no torn line)."""
        out = InstanceOutput(self, instance, tail_file=tail_file)
        self._writers.add(out)
        return out

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(encoded)`` with the JSON-lines bytes of every write."""
        self._subscribers.append(callback)
        return functools.partial(_discard, self._subscribers, callback)

    def write(self, parts: list[Buffer]) -> None:
        """Append encoded records (one writev), notify subscribers, rotate when full."""
        if self._fd < 0:
            raise ValueError(f"the log of {self.agent!r} is closed")
        start = self._size
        try:
            for i in range(0, len(parts), _IOV_MAX):
                group = parts[i : i + _IOV_MAX]
                want = sum(len(p) for p in group)
                done = os.writev(self._fd, group)
                if done < want:  # short write: finish it rather than tear a record
                    rest = memoryview(b"".join(group))[done:]
                    while rest:
                        rest = rest[os.write(self._fd, rest) :]
                self._size += want
        except OSError:
            # a full disk: take back what this call wrote, so the caller can offer the same
            # bytes again later and the file holds no torn or doubled record
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            self._size = start
            raise
        if self._subscribers:
            data = b"".join(parts)
            for callback in list(self._subscribers):
                callback(data)
        if self._size >= self.max_size:
            self.rotate()

    def rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        for number, path in reversed(rotated_files(self._dir, self.agent)):
            if number >= self.keep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            else:
                os.replace(path, f"{self._path}.{number + 1}")
        if self.keep > 0:
            os.replace(self._path, f"{self._path}.1")
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
        self._open()
        self.prune()

    def prune(self) -> None:
        """Delete rotated files last written more than ``max_age`` seconds ago."""
        if self.max_age is None:
            return
        cutoff = self.clock() - self.max_age
        for _, path in rotated_files(self._dir, self.agent):
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_mtime < cutoff:
                    os.unlink(path)

    def close(self) -> None:
        for out in list(self._writers):
            out.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _Encoders(dict[Stream, LineEncoder]):
    """An instance's encoder per stream, made at the stream's first line: most idle agents
    never write to one stream or either, and hundreds of them add up (benchmark S2)."""

    __slots__ = ("agent", "counts", "instance", "run")

    def __init__(self, agent: str, instance: str, counts: list[int]) -> None:
        super().__init__()
        self.agent, self.instance, self.counts = agent, instance, counts
        self.run: int | None = None

    def __missing__(self, stream: Stream) -> LineEncoder:
        encoder = self[stream] = LineEncoder(self.agent, self.instance, stream, self.run,
                                             self.counts)
        return encoder


class _Tails(dict[Stream, bytearray]):
    """Torn trailing lines per stream; a stream's buffer is made at its first output."""

    __slots__ = ()

    def __missing__(self, stream: Stream) -> bytearray:
        tail = self[stream] = bytearray()
        return tail


class InstanceOutput:
    """Frames one instance's stdout/stderr into records (the driver's ``Output``).

    ``line_listeners``: append a callback ``(stream, lines)`` to get the complete lines of each
    feed as raw bytes (redacted, each ending in ``\\n``; pieces of over-long lines as lines).
    ``tail_file``: when set, the torn tails are saved there after every feed that changes
    them (pwrite + truncate; redacted), for ``restore_from_tail_file`` after a restart.

    A stack (a Python traceback, a Java, Node.js or Go one: ``corral.logs.stacks``) becomes
    one record at level error. One that a feed ends inside, or a last line that may head one
    (``stacks.held_head``), is held at the head of the stream's torn tail (so it is saved and
    restored with it) until the lines that end it come, ``STACK_IDLE`` seconds pass without
    output (timed on the running event loop, when there is one), the stream ends or the
    output closes (a held head line nothing continued is then written as it is); one longer
    than ``max_line`` is framed line by line."""

    # one per instance: slots keep hundreds of idle ones small (benchmark S2)
    __slots__ = ("__weakref__", "_encoders", "_held", "_redactor", "_tail_fd", "_tails",
                 "_timers", "fed_at", "instance", "line_listeners", "log", "tail_file")

    def __init__(self, log: AgentLog, instance: str, *, tail_file: Dir | None = None):
        self.log, self.instance = log, instance
        self.line_listeners: list[LineListener] = []
        self.fed_at = 0.0  # the log clock's time of the last output, a torn line's too
        self.tail_file = os.fspath(tail_file) if tail_file is not None else None
        self._tail_fd = -1
        self._redactor = _NO_SECRETS
        self._encoders = _Encoders(log.agent, instance, log.counts)
        self._tails = _Tails()  # raw torn trailing lines
        self._held: dict[Stream, int] = {}  # bytes of an unfinished stack heading the tail
        self._timers: dict[Stream, asyncio.TimerHandle] = {}

    def listen_lines(self, callback: LineListener) -> Callable[[], None]:
        """Add ``callback`` to ``line_listeners``; returns the function that removes it."""
        self.line_listeners.append(callback)
        return functools.partial(_discard, self.line_listeners, callback)

    def redact(self, secrets: Iterable[str]) -> None:
        """Replace every later occurrence of these values, and of the forms of them
        ``corral.logs.redact`` derives, by ``***`` (empty ones ignored)."""
        self._redactor = Redactor(secrets)

    def set_run(self, run: int | None) -> None:
        """Records from now on carry ``run`` (a scheduled agent's run number)."""
        self._encoders.run = run
        for encoder in self._encoders.values():
            encoder.set_run(run)

    def use_redactor(self, redactor: Redactor) -> None:
        """Redact with ``redactor`` (shared: values added to it later are hidden too)."""
        self._redactor = redactor

    def feed(self, stream: Stream, data: bytes) -> None:
        if not data:
            return
        before, held = bytes(self._tails[stream]), self._held.get(stream, 0) if self._held else 0
        counts = self.log.counts[:]
        try:
            self._feed(stream, data)
        except OSError:
            # nothing of ``data`` counts as taken (AgentLog.write took its records back): the
            # caller keeps the bytes and offers them again, so the torn tail is as it was
            self._tails[stream] = bytearray(before)
            self.log.counts[:] = counts
            self._hold(stream, held)
            if self.tail_file is not None:
                with contextlib.suppress(OSError):
                    self._save_tails()
            raise
        if self._held or self._timers:  # (empty but for a traceback)
            self._time_stack(stream)

    def _feed(self, stream: Stream, data: bytes) -> None:
        tail, max_line = self._tails[stream], self.log.max_line
        had_tail, ts = bool(tail), self.log.clock()
        self.fed_at = ts
        out: _Out = []
        lines: _Lines = [] if self.line_listeners else None
        nl = data.rfind(b"\n")
        if nl < 0:
            tail += data
        else:
            if tail:  # one copy (join), not two (+= into the tail, then bytes())
                block = b"".join((tail, memoryview(data)[: nl + 1]))
            else:
                block = data if nl == len(data) - 1 else data[: nl + 1]
            held = self._complete(stream, block, ts, out, lines)
            if held or self._held:
                tail = self._tails[stream] = bytearray(held)
                tail += memoryview(data)[nl + 1 :]
                self._hold(stream, len(held))
            else:
                tail = self._tails[stream] = bytearray(memoryview(data)[nl + 1 :])
        if len(tail) > max_line and self._held and self._held.get(stream):
            self._write_stack(stream, ts, out, lines)  # the torn line after it is cut below
        while len(tail) > max_line:
            cut = cut_point(tail, max_line, self._redactor.needles)
            self._line(stream, bytes(tail[:cut]), ts, out, lines, partial=True)
            del tail[:cut]
        if self.tail_file is not None and (had_tail or tail):
            self._save_tails()  # first: a kill before the write below loses no continuation
        self._emit(stream, out, lines)

    def eof(self, stream: Stream) -> None:
        """The stream ended: its torn trailing line becomes a record of its own, or the last
        line of the stack held before it."""
        if len(self._tails[stream]) > self._held.get(stream, 0):
            self.feed(stream, b"\n")
        self.flush_stack(stream)

    def flush_stack(self, stream: Stream) -> None:
        """Write the stream's held stack, if any, as it is (an idle time passed, or the end)."""
        if timer := self._timers.pop(stream, None):
            timer.cancel()
        if not self._held.get(stream):
            return
        out: _Out = []
        lines: _Lines = [] if self.line_listeners else None
        self._write_stack(stream, self.log.clock(), out, lines)
        if self.tail_file is not None:
            self._save_tails()
        self._emit(stream, out, lines)

    def _write_stack(self, stream: Stream, ts: float, out: _Out, lines: _Lines) -> None:
        tail, held = self._tails[stream], self._held.pop(stream, 0)
        raw = bytes(tail[:held])
        del tail[:held]
        if stacks.alone(raw):  # only a line that might have headed one: as it is
            self._frame(stream, raw, ts, out, lines)
        else:
            self._stack(stream, raw, ts, out, lines)

    def _hold(self, stream: Stream, size: int) -> None:
        """The first ``size`` bytes of the stream's tail are a stack's lines (0: none; then
        ``_held`` is left empty, which keeps ``feed`` on its short way)."""
        if size:
            self._held[stream] = size
        else:
            self._held.pop(stream, None)

    def _time_stack(self, stream: Stream) -> None:
        """(Re)start the idle timer of a held stack; none when nothing is held."""
        if timer := self._timers.pop(stream, None):
            timer.cancel()
        if not self._held.get(stream):
            return
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a plain caller): the stack waits for more output or the end
        self._timers[stream] = loop.call_later(STACK_IDLE, self._idle, stream)

    def _idle(self, stream: Stream) -> None:
        self._timers.pop(stream, None)
        try:
            self.flush_stack(stream)
        except OSError:  # a full disk: try again after the next idle time
            self._time_stack(stream)

    def pending(self) -> dict[str, bytes]:
        return {stream: bytes(tail) for stream, tail in self._tails.items() if tail}

    def restore(self, pending: dict[str, bytes]) -> None:
        """Continue the torn lines a previous daemon left (see ``pending``)."""
        self._tails = _Tails({s: bytearray(pending.get(s, b"")) for s in _STREAMS})
        self._held = {}  # a stack heading a restored tail is found again by the next feed
        if self.tail_file is not None:
            self._save_tails()

    def restore_from_tail_file(self) -> dict[str, bytes]:
        """Restore the torn lines saved in ``tail_file`` (nothing if absent or damaged)."""
        raw = b""
        if self.tail_file is not None:
            with contextlib.suppress(FileNotFoundError), open(self.tail_file, "rb") as f:
                raw = f.read()
        magic, n_out, n_err = _TAIL.unpack_from(raw) if len(raw) >= _TAIL.size else (b"", 0, 0)
        if magic != _TAIL_MAGIC or _TAIL.size + n_out + n_err > len(raw):
            return {}
        body = raw[_TAIL.size :]
        self.restore({"stdout": body[:n_out], "stderr": body[n_out : n_out + n_err]})
        return self.pending()

    def close(self) -> None:
        for stream in _STREAMS:  # a held stack is written while the log is still open
            with contextlib.suppress(OSError, ValueError):
                self.flush_stack(stream)
        if self._tail_fd >= 0:
            os.close(self._tail_fd)
        self._tail_fd = -1

    def _save_tails(self) -> None:
        assert self.tail_file is not None
        out, err = (self._redact(bytes(self._tails[s])) for s in _STREAMS)
        data = _TAIL.pack(_TAIL_MAGIC, len(out), len(err)) + out + err
        if self._tail_fd < 0:
            self._tail_fd = os.open(self.tail_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.pwrite(self._tail_fd, data, 0)
        os.ftruncate(self._tail_fd, len(data))

    def _redact(self, data: bytes) -> bytes:
        return self._redactor(data) if self._redactor.needles else data

    def _complete(self, stream: Stream, block: bytes, ts: float, out: _Out, lines: _Lines
                  ) -> bytes:
        """Encode complete lines, each stack as one record; returns the lines of a stack the
        block ends inside, to hold."""
        if self._redactor.needles:  # the encoder scans the redacted text: look for a stack here
            found, stack = None, stacks.look(block)
        else:  # scanned once: the encoder takes the scan for the block's only segment
            found = scan(block)
            stack = found.stack
        if not stack and not (self._held and stream in self._held):  # (held: look again)
            # a last line that may head frames still to come (the scan rules most blocks out)
            head = stacks.held_head(block) if found is None or found.head else len(block)
            if head == len(block):
                self._frame(stream, block, ts, out, lines, found)
                return b""
            if head:
                self._frame(stream, block[:head], ts, out, lines)
            runs: list[tuple[bool, bytes]] = []
            held = block[head:]
        else:
            runs, held = stacks.split(block)
        max_line = self.log.max_line
        for is_stack, run in runs:
            if is_stack and len(run) <= max_line:
                self._stack(stream, run, ts, out, lines)
            else:
                self._frame(stream, run, ts, out, lines)
        if len(held) > max_line:
            self._frame(stream, held, ts, out, lines)
            return b""
        return held

    def _stack(self, stream: Stream, raw: bytes, ts: float, out: _Out, lines: _Lines) -> None:
        raw = self._redact(raw)
        out.append(self._encoders[stream].encode_stack(raw, ts))
        if lines is not None:
            lines.append(raw)

    def _frame(self, stream: Stream, block: bytes, ts: float, out: _Out, lines: _Lines,
               found: Scan | None = None) -> None:
        """Encode complete lines; over-long ones are cut into pieces marked partial.
        ``found``: the scan of ``block``, used if it is encoded as it is."""
        max_line = self.log.max_line
        for is_long, segment in segments(block, max_line):
            if not is_long:
                redacted = self._redact(segment)
                same = redacted is block and found is not None
                self._encoders[stream].encode(redacted, ts, out, found if same else None)
                segment = redacted
                if lines is not None:
                    lines.append(segment)
                continue
            segment = segment.removesuffix(b"\r")
            whole = len(segment) <= max_line  # only a CR made it long: still one line
            while len(segment) > max_line:
                cut = cut_point(segment, max_line, self._redactor.needles)
                self._line(stream, segment[:cut], ts, out, lines, partial=True)
                segment = segment[cut:]
            self._line(stream, segment, ts, out, lines, merge=whole)

    def _line(self, stream: Stream, raw: bytes, ts: float, out: _Out, lines: _Lines, *,
              partial: bool = False, merge: bool = False) -> None:  # fmt: skip
        """One record through the slow path (pieces of long lines, flushed tails)."""
        raw = self._redact(raw)
        out.append(self._encoders[stream].encode_piece(raw, ts, partial=partial, merge=merge))
        if lines is not None:
            lines.append(raw + b"\n")

    def _emit(self, stream: Stream, out: _Out, lines: _Lines) -> None:
        if out:
            self.log.write(out)
        if lines:
            data = lines[0] if len(lines) == 1 else b"".join(lines)
            for callback in list(self.line_listeners):
                callback(stream, data)


def bench_sink(lines: int = 2_000_000, *, agents: int = 10, chunk_size: int = 256 * 1024) -> float:
    """Print and return fast-path throughput in lines/s: ``agents`` logs fed round-robin with
    ``chunk_size`` chunks of 100-byte lines; the line count on disk is checked afterwards."""
    import tempfile

    line = b"2024-11-25T10:00:00.123456Z worker-3 handled request id=000123 path=/api/items"
    per_chunk = chunk_size // 100
    chunk, rounds = (line.ljust(99, b".") + b"\n") * per_chunk, lines // agents // per_chunk
    with tempfile.TemporaryDirectory() as tmp:
        outs = [AgentLog(tmp, f"a{i}").writer(f"a{i}.1") for i in range(agents)]
        start = time.perf_counter()
        for _ in range(rounds):
            for out in outs:
                out.feed("stdout", chunk)
        elapsed = time.perf_counter() - start
        for out in outs:
            out.log.close()
        from pathlib import Path

        written = sum(p.read_bytes().count(b"\n") for p in Path(tmp).iterdir())
    fed = rounds * agents * per_chunk
    assert written == fed, (written, fed)
    print(f"{fed} lines, {agents} agents, {chunk_size} B chunks: {fed / elapsed:,.0f} lines/s")
    return fed / elapsed


if __name__ == "__main__":
    bench_sink()
