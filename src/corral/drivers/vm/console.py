"""Reading a guest's console: the agent's lines go on, the init's markers are taken out.

Before ``corral-booted TOKEN`` the console (stdout) carries the firmware's and the kernel's boot
chatter: it is held back (kept only in the tail, which explains a guest that never boots)
so an agent's logs start with the agent's first line. After ``corral-exit TOKEN CODE`` only
the kernel's power-off message follows: dropped too. Lines are split here (the serial port
delivers bytes in any chunking), and a ``\\r`` before ``\\n`` from the kernel's console is
removed.
"""

from __future__ import annotations

import collections
import contextlib
import re

from corral.drivers.base import Output, Stream

TAIL_LINES = 80  # a kernel panic's stack trace is ~40 lines; its reason comes before it
_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s*")
_TELLING = re.compile(r"Kernel panic|corral-guest:|VFS:|not syncing|error|fail", re.IGNORECASE)


class Console:
    """An ``Output`` in front of the agent's own, one per running guest."""

    def __init__(self, output: Output, token: str, *, booted: bool = False) -> None:
        self.output = output
        self.booted = booted
        self.exit_code: int | None = None
        self.stopping = False  # the supervisor asked it to stop
        self.timed_out = False  # killed for not booting within boot_timeout
        self.boot_timeout = 0.0
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._booted_line = f"corral-booted {token}".encode()
        self._exit_prefix = f"corral-exit {token} ".encode()
        self._partial: dict[Stream, bytes] = {"stdout": b"", "stderr": b""}

    def feed(self, stream: Stream, data: bytes) -> None:
        data = self._partial[stream] + data
        lines = data.split(b"\n")
        self._partial[stream] = lines.pop()
        passed = [line for line in lines if self._line(stream, line.rstrip(b"\r"))]
        if passed:
            self.output.feed(stream, b"".join(line.rstrip(b"\r") + b"\n" for line in passed))

    def eof(self, stream: Stream) -> None:
        rest, self._partial[stream] = self._partial[stream], b""
        if rest and self._line(stream, rest):
            self.output.feed(stream, rest)
        self.output.eof(stream)

    def _line(self, stream: Stream, line: bytes) -> bool:
        """Record the line; True when it is the agent's, to be passed on."""
        if stream == "stdout":
            # a marker may follow the firmware's terminal resets on the same line
            if line.endswith(self._booted_line):
                self.booted = True
                return False
            at = line.find(self._exit_prefix)
            if at >= 0:
                with contextlib.suppress(ValueError):
                    self.exit_code = int(line[at + len(self._exit_prefix):])
                return False
        text = line.decode(errors="replace").replace("\x1b", "")
        if text.strip():
            self.tail.append(text)
        # stderr (ttyS1, and QEMU's own complaints) is only ever the job's or QEMU's: always
        # passed on, also when read after the stdout pipe already gave the exit marker
        return stream == "stderr" or (self.booted and self.exit_code is None)

    def describe_tail(self) -> str:
        """The console in one line, for an error message: the lines that tell why (a panic,
        the init's own complaints) when there are some, else the last few."""
        lines = [_TIMESTAMP.sub("", t).strip() for t in self.tail]
        lines = [t for t in lines if t]
        if not lines:
            return "the console stayed empty"
        telling = [t for t in lines if _TELLING.search(t)]
        return " | ".join(telling[-3:] if telling else lines[-4:])
