"""S4 log storage checks: count spam lines as they land, then verify them line by line.

Works on every tool's storage format: raw lines (supervisord, circus, PM2), prefixed lines
(honcho ``HH:MM:SS spam.1 | …``, baseline ``<ts> c1 …``) and JSON lines (corral, field
``message``). The payload is whatever follows the marker ``#SPAM# `` up to the end of the line.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MARK = b"#SPAM# "
PAYLOAD = re.compile(rb"#SPAM# (\d{7}) (\d{9}) x{74}")


class LogCounter:
    """Counts marker occurrences in files that only grow; reads each byte once."""

    def __init__(self, files: Callable[[], list[Path]]) -> None:
        self.files = files
        self.offsets: dict[Path, int] = {}
        self.carry: dict[Path, bytes] = {}
        self.count = 0

    def poll(self) -> int:
        for path in self.files():
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets.get(path, 0))
                    data = f.read()
            except OSError:
                continue
            if not data:
                continue
            self.offsets[path] = self.offsets.get(path, 0) + len(data)
            buf = self.carry.get(path, b"") + data
            self.count += buf.count(MARK)
            # keep a tail that could hold the start of a marker split across reads
            cut = max(buf.rfind(MARK) + len(MARK), len(buf) - len(MARK) + 1, 0)
            self.carry[path] = buf[cut:]
        return self.count


@dataclass
class Verdict:
    children: int = 0
    valid: int = 0
    lost: int = 0
    reordered: int = 0
    duplicated: int = 0
    torn: int = 0
    notes: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not (self.lost or self.reordered or self.duplicated or self.torn)

    def summary(self) -> str:
        return (
            f"{self.valid} valid lines from {self.children} children; lost {self.lost}, "
            f"reordered {self.reordered}, duplicated {self.duplicated}, torn {self.torn}"
        )


def _payload(line: bytes) -> bytes | None:
    if line.startswith(b"{"):
        with contextlib.suppress(ValueError, AttributeError):
            line = json.loads(line).get("message", "").encode()
    i = line.find(MARK)
    return None if i < 0 else line[i:]


def verify(files: list[Path], n_children: int, lines: int) -> Verdict:
    """Read the files in order; check every child has seq 0..lines-1 once and in order."""
    v = Verdict()
    seen: dict[bytes, bytearray] = {}
    last: dict[bytes, int] = {}
    for path in files:
        with open(path, "rb") as f:
            for raw in f:
                payload = _payload(raw.rstrip(b"\r\n"))
                if payload is None:
                    continue
                m = PAYLOAD.fullmatch(payload)
                if m is None:
                    v.torn += 1
                    continue
                cid, seq = m.group(1), int(m.group(2))
                bits = seen.setdefault(cid, bytearray(lines))
                if seq >= lines:
                    v.torn += 1
                    continue
                if bits[seq]:
                    v.duplicated += 1
                    continue
                bits[seq] = 1
                v.valid += 1
                if seq < last.get(cid, -1):
                    v.reordered += 1
                last[cid] = max(seq, last.get(cid, -1))
    v.children = len(seen)
    v.lost = sum(lines - bits.count(1) for bits in seen.values())
    if len(seen) < n_children:
        v.lost += (n_children - len(seen)) * lines
        v.notes.append(f"only {len(seen)} of {n_children} children seen")
    elif len(seen) > n_children:
        v.notes.append(f"{len(seen)} child ids seen (restarts?)")
    return v
