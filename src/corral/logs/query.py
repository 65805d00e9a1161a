"""Reading the log store for ``corral logs``: filter, merge agents by time, tail, format.

Files are ``<agent>.log`` plus rotated ``<agent>.log.N`` (N=1 newest). Records of several
agents are merged by ``ts`` with ``heapq.merge``, which is stable: records with equal ``ts``
keep agent order, and each agent's records keep their file order even if its clock stepped
back. Cheap byte checks (``ts`` is always the first key, ``"instance"``/``"level"`` are written
in one fixed form) reject most non-matching lines before ``json.loads``.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from corral.logs.records import LEVEL_RANK, LEVELS, RESERVED

Dir: TypeAlias = str | os.PathLike[str]  # a log directory

Record = dict[str, Any]
_STAMP = b'{"timestamp":'  # every record starts so (records.py): time filters skip JSON parsing
_BLOCK = 64 * 1024
_LOG_NAME = re.compile(r"(.+)\.log(?:\.\d+)?")
_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
# Like docker compose: a colour per instance (stable: by CRC of the name), level colours.
_PALETTE = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")
_LEVEL_COLOUR = {"debug": "2", "warn": "33", "error": "31", "fatal": "1;31"}


@dataclass(frozen=True, slots=True)
class Filters:
    since: float | None = None
    until: float | None = None
    grep: re.Pattern[str] | None = None  # searched in the message
    level: str | None = None  # minimum level
    instance: str | None = None
    # The exact bytes a matching raw line contains (derived, see ``build``).
    instance_bytes: bytes = field(default=b"", repr=False)
    level_bytes: tuple[bytes, ...] = field(default=(), repr=False)
    run: int | None = None  # a scheduled agent's run number

    @classmethod
    def build(
        cls, *, since: float | None = None, until: float | None = None, grep: str | None = None,
        level: str | None = None, instance: str | None = None, run: int | None = None,
    ) -> Filters:  # fmt: skip
        if level is not None and level not in LEVEL_RANK:
            raise ValueError(f"unknown level {level!r}: use one of {', '.join(LEVELS)}")
        try:
            pattern = re.compile(grep) if grep is not None else None
        except re.error as exc:
            raise ValueError(f"grep pattern {grep!r} is not a valid regex: {exc}") from None
        levels = LEVELS[LEVEL_RANK[level] :] if level else ()
        return cls(
            since, until, pattern, level, instance,
            b'"instance":' + json.dumps(instance, ensure_ascii=False).encode() if instance else b"",
            tuple(f'"level":"{name}"'.encode() for name in levels), run,
        )  # fmt: skip

    def quick_reject(self, line: bytes) -> bool:
        """True when the raw line certainly does not match (no JSON parsing)."""
        if self.instance_bytes and self.instance_bytes not in line:
            return True
        if self.level_bytes and not any(needle in line for needle in self.level_bytes):
            return True
        if (self.since is not None or self.until is not None) and line.startswith(_STAMP):
            try:
                ts = float(line[len(_STAMP) : line.index(b",", len(_STAMP))])
            except ValueError:
                return False
            return not self._in_time(ts)
        return False

    def _levels(self) -> tuple[str, ...]:
        return LEVELS[LEVEL_RANK[self.level] :] if self.level else LEVELS

    def _in_time(self, ts: float) -> bool:
        return (self.since is None or ts >= self.since) and (self.until is None or ts <= self.until)


def stamp(rec: Record) -> Any:
    """A record's time (unix seconds); ``ts`` in files written before it was ``timestamp``."""
    return rec.get("timestamp", rec.get("ts"))


def matches(rec: Record, filters: Filters | None = None, **criteria: Any) -> bool:
    """Whether a record passes ``filters``, or ``Filters.build(**criteria)`` (``--follow``)."""
    filters = filters or Filters.build(**criteria)
    ts = stamp(rec)
    if not isinstance(ts, int | float) or not filters._in_time(ts):
        return False
    if filters.instance is not None and rec.get("instance") != filters.instance:
        return False
    if filters.run is not None and rec.get("run") != filters.run:
        return False
    if filters.level is not None and rec.get("level") not in filters._levels():
        return False
    message = rec.get("message")
    return filters.grep is None or filters.grep.search(str(message or "")) is not None


def decode(data: bytes | Iterable[bytes]) -> Iterator[Record]:
    """Records from JSON-lines bytes (what subscribers receive) or from lines; damaged
    lines are skipped."""
    for line in data.split(b"\n") if isinstance(data, bytes) else data:
        if line.strip():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec


def agents_in(directory: Dir) -> list[str]:
    """Agents with a log file (current or rotated) in ``directory``."""
    names = os.listdir(directory) if os.path.isdir(directory) else []
    return sorted({m.group(1) for m in map(_LOG_NAME.fullmatch, names) if m})


def rotated_files(directory: Dir, agent: str) -> list[tuple[int, str]]:
    """An agent's rotated log files as (number, path), newest (1) first."""
    prefix, names = f"{agent}.log.", os.listdir(directory) if os.path.isdir(directory) else []
    return sorted(
        (int(name[len(prefix) :]), os.path.join(directory, name))
        for name in names
        if name.startswith(prefix) and name[len(prefix) :].isdigit()
    )


def log_files(directory: Dir, agent: str) -> list[str]:
    """An agent's files, oldest first (``.N`` ... ``.1``, then the current file)."""
    current = os.path.join(directory, f"{agent}.log")
    older = [path for _, path in reversed(rotated_files(directory, agent))]
    return older + ([current] if os.path.exists(current) else [])


def _select(directory: Dir, agents: list[str] | None) -> list[str]:
    return agents if agents is not None else agents_in(directory)


def _agent_records(directory: Dir, agent: str, filters: Filters) -> Iterator[Record]:
    for path in log_files(directory, agent):
        try:
            if filters.since is not None and os.stat(path).st_mtime < filters.since:
                continue  # last written before ``since``: every record in it is older
            f = open(path, "rb")  # noqa: SIM115 (closed by the with below)
        except FileNotFoundError:  # rotated away while we looked
            continue
        with f:
            lines = (line for line in f if not filters.quick_reject(line))
            yield from (rec for rec in decode(lines) if matches(rec, filters))


def iter_records(
    directory: Dir, agents: list[str] | None = None, *, since: float | None = None,
    until: float | None = None, grep: str | None = None, level: str | None = None,
    instance: str | None = None, filters: Filters | None = None,
) -> Iterator[Record]:  # fmt: skip
    """Matching records of ``agents`` (default: all), oldest first, merged by timestamp;
    ``filters`` already built (the daemon checks them before it answers) replace the rest."""
    filters = filters or Filters.build(
        since=since, until=until, grep=grep, level=level, instance=instance)
    streams = [_agent_records(directory, agent, filters) for agent in _select(directory, agents)]
    return heapq.merge(*streams, key=stamp)


def _lines_backwards(path: str) -> Iterator[bytes]:
    """The lines of a file, last first, read in blocks from the end."""
    with open(path, "rb") as f:
        pos = f.seek(0, 2)
        rest = b""
        while pos > 0:
            size = min(_BLOCK, pos)
            pos -= size
            f.seek(pos)
            lines = (f.read(size) + rest).split(b"\n")
            rest = lines.pop(0)  # maybe the end of a line that starts in an earlier block
            yield from (line for line in reversed(lines) if line)
        if rest:
            yield rest


def tail(
    directory: Dir, agents: list[str] | None, n: int, *, since: float | None = None,
    until: float | None = None, grep: str | None = None, level: str | None = None,
    instance: str | None = None, filters: Filters | None = None,
) -> list[Record]:  # fmt: skip
    """The last ``n`` matching records, oldest first. Reads each agent's files backwards and
    stops at ``n`` matches, so the cost follows ``n``, not the history."""
    if n <= 0:
        return []
    filters = filters or Filters.build(
        since=since, until=until, grep=grep, level=level, instance=instance)
    since = filters.since
    per_agent: list[list[Record]] = []
    for agent in _select(directory, agents):
        found: list[Record] = []
        for path in reversed(log_files(directory, agent)):
            with contextlib.suppress(FileNotFoundError):  # rotated away while we looked
                if len(found) >= n or (since is not None and os.stat(path).st_mtime < since):
                    break
                for line in _lines_backwards(path):
                    if not filters.quick_reject(line):
                        found.extend(rec for rec in decode([line]) if matches(rec, filters))
                        if len(found) >= n:
                            break
        per_agent.append(found[::-1])
    merged = list(heapq.merge(*per_agent, key=stamp))
    return merged[-n:]


def format_record(rec: Record, *, color: bool, width_prefix: int, timestamps: bool = False) -> str:
    """``web.1  | message`` for humans; fields merged from a JSON line follow as key=value."""
    instance = str(rec.get("instance", "?"))
    message = str(rec.get("message", ""))
    extra = " ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v)}"
        for k, v in rec.items()
        if k not in RESERVED
    )
    message = f"{message} {extra}" if message and extra else message or extra
    prefix = instance.ljust(width_prefix) + " |"
    when = stamp(rec)
    if timestamps and isinstance(when, int | float):
        shown = datetime.fromtimestamp(when).isoformat(sep=" ", timespec="milliseconds")
        prefix = f"{prefix} {shown}"
    if color:
        import zlib  # here: the daemon imports this module but never colours (S2)

        colour = _PALETTE[zlib.crc32(instance.encode()) % len(_PALETTE)]
        prefix = f"\x1b[{colour}m{prefix}\x1b[0m"
        level_colour = _LEVEL_COLOUR.get(str(rec.get("level")))
        if level_colour:
            message = f"\x1b[{level_colour}m{message}\x1b[0m"
    return f"{prefix} {message}"


def parse_since(value: str, now: float | None = None) -> float:
    """``10m``/``2h``/``1h30m``/``500ms`` ago, an ISO-8601 time (local if no zone), or unix
    seconds -> unix seconds."""
    text = value.strip()
    now = time.time() if now is None else now
    if text and not _DURATION.sub("", text):
        return now - sum(float(num) * _UNITS[unit] for num, unit in _DURATION.findall(text))
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if math.isfinite(seconds):
        return seconds
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(
            f"cannot read {value!r} as a time: use a duration (10m, 2h, 1h30m), "
            "an ISO-8601 time (2024-11-25T10:00:00) or unix seconds"
        ) from None
