"""Reading the log store for ``corral logs``: filter, merge agents by time, tail.

The daemon answers from these files, and ``corral logs`` reads them itself when no daemon
runs (after ``down``). Files are ``<agent>.log`` plus rotated ``<agent>.log.N`` (N=1 newest).
Records of several agents are merged by ``timestamp`` with ``heapq.merge``, which is stable:
records with equal times keep agent order, and each agent's records keep their file order even
if its clock stepped back. Cheap byte checks (``timestamp`` is always the first key, in RFC 3339
text of one width, or unix seconds in older files; ``"level"`` is written in one fixed form)
reject most non-matching lines before ``json.loads``.
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

from corral.logs.records import LEVEL_RANK, LEVELS
from corral.logs.stamps import rfc3339, seconds

Dir: TypeAlias = str | os.PathLike[str]  # a log directory

Record = dict[str, Any]
_STAMP = b'{"timestamp":'  # every record starts so (records.py): time filters skip JSON parsing
_AT = len(_STAMP)
_TEXT_LEN = len("2026-12-02T14:03:05.123456Z") + 1  # and its opening quote
_BLOCK = 64 * 1024
# A file's mtime comes from the kernel's coarse clock (ticks of some ms), so it can be a little
# before the time stamped on the last record written: a file is skipped only well before.
_MTIME_SLACK = 1.0
_LOG_NAME = re.compile(r"(.+)\.log(?:\.\d+)?")
_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


@dataclass(frozen=True, slots=True)
class Filters:
    since: float | None = None
    until: float | None = None
    grep: re.Pattern[str] | None = None  # searched in the message
    level: str | None = None  # minimum level
    # Named instances (``parser.2``): of their agents, only these; other agents' records pass.
    instances: tuple[str, ...] = ()
    run: int | None = None  # a scheduled agent's run number
    # Derived (see ``build``): the agents ``instances`` restrict, the bytes a matching raw line
    # contains, and the time bounds as stored (RFC 3339 text sorts as the times do).
    restricted: frozenset[str] = field(default=frozenset(), repr=False)
    level_bytes: tuple[bytes, ...] = field(default=(), repr=False)
    since_text: bytes = field(default=b"", repr=False)
    until_text: bytes = field(default=b"", repr=False)

    @classmethod
    def build(
        cls, *, since: float | None = None, until: float | None = None, grep: str | None = None,
        level: str | None = None, instances: Iterable[str] = (), run: int | None = None,
    ) -> Filters:  # fmt: skip
        if level is not None and level not in LEVEL_RANK:
            raise ValueError(f"unknown level {level!r}: use one of {', '.join(LEVELS)}")
        try:
            pattern = re.compile(grep) if grep is not None else None
        except re.error as exc:
            raise ValueError(f"grep pattern {grep!r} is not a valid regex: {exc}") from None
        levels = LEVELS[LEVEL_RANK[level] :] if level else ()
        named = tuple(instances)
        return cls(
            since=since, until=until, grep=pattern, level=level, instances=named, run=run,
            restricted=frozenset(name.rpartition(".")[0] for name in named),
            level_bytes=tuple(f'"level":"{name}"'.encode() for name in levels),
            since_text=_text(since), until_text=_text(until),
        )  # fmt: skip

    def quick_reject(self, line: bytes) -> bool:
        """True when the raw line certainly does not match (no JSON parsing)."""
        if self.level_bytes and not any(needle in line for needle in self.level_bytes):
            return True
        if (self.since is None and self.until is None) or not line.startswith(_STAMP):
            return False
        if line[_AT : _AT + 1] == b'"':  # RFC 3339 text: compared as stored
            when = line[_AT + 1 : _AT + _TEXT_LEN]
            return bool(self.since_text and when < self.since_text) or bool(
                self.until_text and when > self.until_text)
        try:  # unix seconds, as files written before the text form hold
            ts = float(line[_AT : line.index(b",", _AT)])
        except ValueError:
            return False
        return not self._in_time(ts)

    def _levels(self) -> tuple[str, ...]:
        return LEVELS[LEVEL_RANK[self.level] :] if self.level else LEVELS

    def _in_time(self, ts: float) -> bool:
        return (self.since is None or ts >= self.since) and (self.until is None or ts <= self.until)


def _text(ts: float | None) -> bytes:
    return rfc3339(ts).encode() if ts is not None and math.isfinite(ts) and ts >= 0 else b""


def stamp(rec: Record) -> float:
    """A record's time in unix seconds: its ``timestamp`` (RFC 3339, or the unix seconds of
    older files; ``ts`` in the oldest); -inf when it has none."""
    ts = seconds(rec.get("timestamp", rec.get("ts")))
    return -math.inf if ts is None else ts


def matches(rec: Record, filters: Filters | None = None, **criteria: Any) -> bool:
    """Whether a record passes ``filters``, or ``Filters.build(**criteria)`` (``--follow``)."""
    filters = filters or Filters.build(**criteria)
    ts = stamp(rec)
    if ts == -math.inf or not filters._in_time(ts):
        return False
    if rec.get("agent") in filters.restricted and rec.get("instance") not in filters.instances:
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


def stored_instance(directory: Dir, instance: str) -> bool:
    """Whether the agent of ``instance`` has records of it in its files (an instance scaled
    away, or of a fleet now down). One bytes search per file: asked only for names that
    are not a current instance."""
    needle = b'"instance":' + json.dumps(instance, ensure_ascii=False).encode()
    for path in log_files(directory, instance.rpartition(".")[0]):
        with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
            if needle in f.read():
                return True
    return False


def _select(directory: Dir, agents: list[str] | None) -> list[str]:
    return agents if agents is not None else agents_in(directory)


def _agent_records(directory: Dir, agent: str, filters: Filters) -> Iterator[Record]:
    for path in log_files(directory, agent):
        try:
            if filters.since is not None and os.stat(path).st_mtime < filters.since - _MTIME_SLACK:
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
    instances: Iterable[str] = (), filters: Filters | None = None,
) -> Iterator[Record]:  # fmt: skip
    """Matching records of ``agents`` (default: all), oldest first, merged by timestamp;
    ``filters`` already built (the daemon checks them before it answers) replace the rest."""
    filters = filters or Filters.build(
        since=since, until=until, grep=grep, level=level, instances=instances)
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
    instances: Iterable[str] = (), filters: Filters | None = None,
) -> list[Record]:  # fmt: skip
    """The last ``n`` matching records of each agent, oldest first, merged by timestamp (as
    compose's ``--tail``, per agent). Reads each agent's files backwards and stops at ``n``
    matches, so the cost follows ``n``, not the history."""
    if n <= 0:
        return []
    filters = filters or Filters.build(
        since=since, until=until, grep=grep, level=level, instances=instances)
    since = filters.since
    per_agent: list[list[Record]] = []
    for agent in _select(directory, agents):
        found: list[Record] = []
        for path in reversed(log_files(directory, agent)):
            with contextlib.suppress(FileNotFoundError):  # rotated away while we looked
                if len(found) >= n or (
                        since is not None and os.stat(path).st_mtime < since - _MTIME_SLACK):
                    break
                for line in _lines_backwards(path):
                    if not filters.quick_reject(line):
                        found.extend(rec for rec in decode([line]) if matches(rec, filters))
                        if len(found) >= n:
                            break
        per_agent.append(found[::-1])
    return list(heapq.merge(*per_agent, key=stamp))


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
