"""A sink's bounded on-disk queue of JSON-lines records: ``DIR/<n>.jsonl`` segments and an
``acked`` file naming the first record not yet taken by the sink.

One thread appends (the tail), one reads and commits (the sender). What is appended is in
the page cache when ``append`` returns, and the ``acked`` file is replaced atomically, so a
killed forwarder loses nothing: it sends again from the last commit (at least once). Not
fsynced: a power cut may lose the last seconds, as it may the agents' own log files.
"""

from __future__ import annotations

import contextlib
import os
import threading

SEGMENT = 8 * 1024 * 1024  # a segment is closed past this size and deleted once all taken


class Spool:
    def __init__(self, directory: str, max_bytes: int) -> None:
        self.dir, self.max_bytes = directory, max_bytes
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._lock = threading.Lock()
        self.ready = threading.Condition(self._lock)
        self._acked = os.path.join(directory, "acked")
        segments = sorted(
            int(n.split(".")[0])
            for n in os.listdir(directory)
            if n.endswith(".jsonl") and n.split(".")[0].isdigit()
        )
        self._head = (segments[0], 0) if segments else (0, 0)
        with contextlib.suppress(FileNotFoundError, ValueError):
            with open(self._acked) as f:
                seg, off = (int(x) for x in f.read().split())
            if seg in segments or not segments:
                self._head = (seg, off)
        self._segments = [s for s in segments if s >= self._head[0]] or [self._head[0]]
        for s in segments:  # taken before the last commit
            if s < self._head[0]:
                self._unlink(s)
        self._fd = -1
        self._open_tail()
        self.bytes = self.records = 0
        for s in self._segments:
            start = self._head[1] if s == self._head[0] else 0
            with open(self._path(s), "rb") as f:
                f.seek(start)
                data = f.read()
            self.bytes += len(data)
            self.records += data.count(b"\n")

    def _path(self, seg: int) -> str:
        return os.path.join(self.dir, f"{seg:012d}.jsonl")

    def _unlink(self, seg: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(seg))

    def _open_tail(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(
            self._path(self._segments[-1]),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
            0o600,
        )
        self._tail_size = os.fstat(self._fd).st_size

    def append(self, data: bytes) -> int:
        """Queue ``data`` (complete JSON lines); returns how many of its records did not fit
        under ``max_bytes`` (the last ones: they are dropped)."""
        with self._lock:
            room = self.max_bytes - self.bytes
            dropped = 0
            if len(data) > room:
                cut = data.rfind(b"\n", 0, max(room, 0)) + 1
                dropped = data.count(b"\n", cut)
                data = data[:cut]
            if data:
                if self._tail_size >= SEGMENT:
                    self._segments.append(self._segments[-1] + 1)
                    self._open_tail()
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
                self._tail_size += len(data)
                self.bytes += len(data)
                self.records += data.count(b"\n")
                self.ready.notify_all()
            return dropped

    def peek(
        self, max_records: int, max_bytes: int = 4 * 1024 * 1024
    ) -> tuple[bytes, tuple[int, int]]:
        """The oldest records not yet taken (at most ``max_records``, about ``max_bytes``)
        and the position ``commit`` takes after them; b"" when none wait."""
        with self._lock:
            seg, off = self._head
            size = self._tail_size if seg == self._segments[-1] else None
        path = self._path(seg)
        with open(path, "rb") as f:
            data = os.pread(f.fileno(), max_bytes, off) if size is None or size > off else b""
        if not data:
            with self._lock:
                finished = seg != self._segments[-1]
                if finished:  # this segment is all taken: on to the next one
                    self._segments.remove(seg)
                    self._head = (self._segments[0], 0)
                    self._save_head()
                    self._unlink(seg)
            if finished:
                return self.peek(max_records, max_bytes)
            return b"", (seg, off)
        end = data.rfind(b"\n") + 1
        if end == 0:  # one record longer than max_bytes
            return self.peek(max_records, len(data) * 2)
        cut, n = 0, 0
        while n < max_records:
            nl = data.find(b"\n", cut, end)
            if nl < 0:
                break
            cut, n = nl + 1, n + 1
        return data[:cut], (seg, off + cut)

    def commit(self, position: tuple[int, int], data: bytes) -> None:
        """The sink took ``data``, which ``peek`` gave with ``position``."""
        with self._lock:
            self._head = position
            self.bytes -= len(data)
            self.records -= data.count(b"\n")
            self._save_head()

    def _save_head(self) -> None:
        tmp = self._acked + ".new"
        with open(tmp, "w") as f:
            f.write(f"{self._head[0]} {self._head[1]}\n")
        os.replace(tmp, self._acked)

    def wait(self, timeout: float) -> None:
        with self._lock:
            if self.bytes == 0:
                self.ready.wait(timeout)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self.ready.notify_all()
