"""Reading the agents' JSON-lines log files as they grow, from a persisted byte cursor.

The cursor (``cursor.json``) holds, per agent, the inode and offset of the first byte not yet
handed on. An agent's file is kept open, so its rotation (``agent.log`` -> ``agent.log.1``)
is read to its end through the same descriptor before the new file is started. After a
restart the cursor's inode is looked for among the rotated files; one deleted meanwhile
(``logs.keep``) is reported as lost, in bytes. Only complete lines are handed on.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

READ = 4 * 1024 * 1024  # at most this much of one file per poll


HEAD = 64  # the first bytes of a file, saved with its inode: a reused inode is another file


class _File:
    __slots__ = ("fd", "inode", "offset")

    def __init__(self, fd: int, inode: int, offset: int) -> None:
        self.fd, self.inode, self.offset = fd, inode, offset

    def head(self) -> str:
        return os.pread(self.fd, HEAD, 0).hex()


class Tail:
    def __init__(self, logs_dir: str, cursor_file: str) -> None:
        self.logs_dir, self.cursor_file = logs_dir, cursor_file
        self._files: dict[str, _File] = {}
        self._backlog: dict[str, list[int]] = {}  # rotated files to read first, oldest first
        self.lost: list[str] = []  # agents whose saved place was rotated away
        self._saved: dict[str, list[Any]] = {}
        with contextlib.suppress(FileNotFoundError, ValueError, TypeError), open(cursor_file) as f:
            self._saved = {a: [int(i), int(o), str(h)] for a, (i, o, h) in json.load(f).items()}

    def _agents(self) -> list[str]:
        try:
            names = os.listdir(self.logs_dir)
        except FileNotFoundError:
            return []
        return sorted(n[:-4] for n in names if n.endswith(".log"))

    def _open(self, agent: str) -> _File | None:
        path = os.path.join(self.logs_dir, f"{agent}.log")
        saved = self._saved.pop(agent, None)
        if saved is not None:  # a previous forwarder's place: this file, or a rotated one
            inode, offset, head = saved
            for candidate in (path, *self._rotated(agent)):
                with contextlib.suppress(FileNotFoundError):
                    fd = os.open(candidate, os.O_RDONLY | os.O_CLOEXEC)
                    st = os.fstat(fd)
                    found = _File(fd, inode, offset)
                    if (
                        st.st_ino == inode
                        and st.st_size >= offset
                        and found.head().startswith(head)
                    ):  # grown since, or the same
                        return found
                    os.close(fd)
            self.lost.append(agent)  # rotated away (logs.keep) before it was read
            for older in reversed(self._rotated(agent)):  # what is left, oldest first
                with contextlib.suppress(FileNotFoundError):
                    self._backlog.setdefault(agent, []).append(
                        os.open(older, os.O_RDONLY | os.O_CLOEXEC)
                    )
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            return _File(fd, os.fstat(fd).st_ino, 0)
        return None

    def _rotated(self, agent: str) -> list[str]:
        base = os.path.join(self.logs_dir, f"{agent}.log.")
        out = []
        for n in range(1, 1000):
            if not os.path.exists(f"{base}{n}"):
                break
            out.append(f"{base}{n}")
        return out

    def poll(self, limit: int = READ) -> Iterator[tuple[str, bytes]]:
        """(agent, complete lines) read since the last poll, at most ``limit`` bytes of each
        agent's file a call (poll again while it yields: the agents take turns); the cursor
        moves on as each is taken (``save`` writes it). A caller may stop taking at any
        point: what it did not take is read again by the next poll."""
        for agent in self._agents():
            f = self._files.get(agent)
            if f is None:
                f = self._open(agent)
                if f is None:
                    continue
                self._files[agent] = f
            for fd in self._backlog.pop(agent, []):
                yield from ((agent, data) for data in _whole(fd))
                os.close(fd)
            while True:
                data = os.pread(f.fd, limit, f.offset)
                end = data.rfind(b"\n") + 1
                if end == 0 and len(data) == limit:  # one line longer than the limit
                    data = self._line(f, limit)
                    end = len(data)
                if end:
                    f.offset += end
                    yield agent, data[:end]
                if len(data) >= limit:
                    break  # more: at the next poll, after the other agents
                if not self._moved_on(agent, f, f.offset + len(data) - end):
                    break
                f = self._files[agent]

    def _line(self, f: _File, size: int) -> bytes:
        """The lines from the cursor to the end of a line longer than ``size``."""
        while True:
            size *= 2
            data = os.pread(f.fd, size, f.offset)
            end = data.rfind(b"\n") + 1
            if end or len(data) < size:
                return data[:end]

    def _moved_on(self, agent: str, f: _File, seen: int) -> bool:
        """The agent's file was rotated (or deleted and made again): the new one is read
        from its start, once the old one is read to its end (``seen``: its size at the
        last read). True when there is more to read."""
        path = os.path.join(self.logs_dir, f"{agent}.log")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        if st.st_ino == f.inode:
            if st.st_size < f.offset:  # truncated in place: from its start again
                f.offset = 0
                return True
            return False
        if os.fstat(f.fd).st_size > seen:  # written after our last read: read it first
            return True
        os.close(f.fd)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._files[agent] = _File(fd, os.fstat(fd).st_ino, 0)
        return True

    def save(self) -> None:
        """Write the cursor (after what was polled has been queued)."""
        state = {a: [f.inode, f.offset, f.head()] for a, f in self._files.items()}
        state.update({a: c for a, c in self._saved.items() if a not in state})
        tmp = self.cursor_file + ".new"
        with open(tmp, "w") as out:
            json.dump(state, out)
        os.replace(tmp, self.cursor_file)

    def close(self) -> None:
        for f in self._files.values():
            os.close(f.fd)
        for fds in self._backlog.values():
            for fd in fds:
                os.close(fd)
        self._files.clear()
        self._backlog.clear()


def _whole(fd: int) -> Iterator[bytes]:
    """The complete lines of a whole (rotated, no longer written) file."""
    offset = 0
    while data := os.pread(fd, READ, offset):
        end = data.rfind(b"\n") + 1
        if not end:
            if len(data) < READ:
                return
            end = len(data)  # a line longer than READ: handed on in pieces
        offset += end
        yield data[:end]
