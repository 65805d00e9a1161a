"""Log records: every line an agent prints becomes one JSON object on one line.

Per-line Python (1-4 us with a level regex) would cap the daemon far below a million lines/s,
so blocks of complete lines go through bytes methods running in C. ``scan`` classifies a block;
a plain one (ASCII, nothing to escape, no level word, no line starting with ``{``) is encoded
by one ``replace`` of ``\\n`` with ``"}\\n<prefix>"``: the fast path. Otherwise ``find`` loops
locate the lines with a level word or a ``{`` and each run of lines sharing a level is escaped
and framed by bytes replaces. Every path gives exactly what ``encode_line`` gives per line.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from json.encoder import encode_basestring
from typing import Literal, NamedTuple, TypeAlias

from corral.logs import fields
from corral.logs.stamps import quoted as stamp_json  # the timestamp value as written

Stream = Literal["stdout", "stderr"]
Level = Literal["debug", "info", "warn", "error", "fatal"]
LEVELS: tuple[Level, ...] = ("debug", "info", "warn", "error", "fatal")
LEVEL_RANK: dict[str, int] = {name: rank for rank, name in enumerate(LEVELS)}
# stderr is where programs write progress, access logs and warnings too: a line says its
# level (``parse_level``), else it is info like stdout (its ``stream`` tells them apart)
DEFAULT_LEVEL: dict[str, Level] = {"stdout": "info", "stderr": "info"}
RESERVED = fields.RESERVED
Buffer: TypeAlias = bytes | memoryview

_WORDS: dict[str, Level] = {
    "trace": "debug", "debug": "debug", "verbose": "debug", "info": "info", "notice": "info",
    "information": "info", "informational": "info", "warn": "warn", "warning": "warn",
    "err": "error", "error": "error", "crit": "fatal", "critical": "fatal", "fatal": "fatal",
    "panic": "fatal", "alert": "fatal", "emerg": "fatal", "emergency": "fatal",
}  # fmt: skip
# Level *words* recognised in plain lines (narrower than the JSON level values above).
_W = "trace|debug|info|notice|warn(?:ing)?|err(?:or)?|fatal|crit(?:ical)?|panic"
_W_CAP = "|".join(w[0].upper() + w[1:] for w in _W.split("|"))
_UPPER = rf"\b({_W.upper()})\b"  # an uppercase word anywhere: "ERROR", "[WARN]"
_BRACKET = rf"\[[ \t]*((?i:{_W}))[ \t]*\]"  # "[error]", "[ Warning ]"
_KEY = rf"\b(?:level|lvl|severity)=[\"']?((?i:{_W}))\b"  # logfmt "level=warn"
_START = rf"({_W}|{_W_CAP}):"  # "error: ..." / "Warning: ..." at line start
# ASCII mode everywhere, so bytes and str patterns agree exactly.
_LEVEL_RE = re.compile(f"{_UPPER}|{_BRACKET}|{_KEY}|^{_START}", re.ASCII | re.MULTILINE)
_UPPER_B, _BRACKET_B, _KEY_B, _START_B, _NL_START_B = (
    re.compile(p.encode(), re.ASCII) for p in (_UPPER, _BRACKET, _KEY, _START, "\n" + _START)
)
# Every uppercase level word starts with one of these stems; found, it is matched in place.
_STEMS = (b"ERR", b"WARN", b"INFO", b"DEBUG", b"FATAL", b"CRIT", b"TRACE", b"PANIC", b"NOTICE")
_KEY_NAMES = (b"level=", b"lvl=", b"severity=")
_FINDERS = [(s, _UPPER_B) for s in _STEMS] + [(k, _KEY_B) for k in _KEY_NAMES]
_BWORDS = {word.encode(): level for word, level in _WORDS.items()}
# Reduced to l/v/y (see _reduce_table) "level=" and "lvl=" read "lvl=", "severity=" "vy=".
_KEYS = (b"lvl=", b"vy=")
# A stem can be in a reduced block only if each of its letters is: one memchr per letter
# instead of a search per stem, which crawls (~7 ns/byte) over text made of its letters.
_LETTERS = sorted({c for stem in _STEMS for c in stem})
_STEM_LETTERS = [(stem, frozenset(stem)) for stem in _STEMS]
_BREAKS = ("\u2028", "\u2029", "\x85")  # see _line_safe
_ESCAPES = [  # backslash first: later escapes add backslashes
    (c.encode(), (encode_basestring(c)[1:-1] if c < "\x80" else f"\\u{ord(c):04x}").encode())
    for c in ("\\", '"', *map(chr, range(10)), *map(chr, range(11, 32)), *_BREAKS)
]


def _reduce_table() -> tuple[bytes, bytes]:
    """``translate`` args keeping the letters of the stems, '=', 'l', 'v', 'y', '(', ')' (for
    ``_STACK``), turning bytes
    needing escapes into NUL, deleting the rest (newlines too). Deleting only joins kept
    bytes: never a miss. Keeping just these letters makes the reduced block short and, for
    stems whose letters are absent, lets each stem search skip (``#SPAM#`` lines reduce to
    ``PA``: no 'R' for ``ERR``); keeping all of A-Z and newlines cost 0.28 ns/byte more."""
    keep = {c for stem in _STEMS for c in stem} | set(b"=lvy()")
    table, delete = bytearray(range(256)), bytearray()
    for b in range(256):
        if (b < 0x20 and b != 0x0A) or b in b'"\\':
            table[b] = 0
        elif b not in keep:
            delete.append(b)
    return bytes(table), bytes(delete)


_TABLE, _DELETE = _reduce_table()
# "Traceback (most recent call last):" reduced: searched in the short reduced block, it costs
# nothing, where a search for the phrase itself took a sixth of the fast path's time
_STACK = b"Traceback (most recent call last):".translate(_TABLE, _DELETE)


class Scan(NamedTuple):
    plain: bool  # ASCII, nothing to escape
    levels: bool  # some line may carry a level word
    json: bool  # some line starts with '{'
    fast: bool  # none of the above: the fast path
    stack: bool  # a stack may start here (``corral.logs.stacks`` looks)
    head: bool  # an "E" (of "Error", "Exception") or off the fast path: ``stacks.held_head``


def scan(block: bytes) -> Scan:
    """Classify a block of complete lines using only C-speed bytes operations."""
    reduced = block.translate(_TABLE, _DELETE)
    present = {c for c in _LETTERS if c in reduced}
    levels = (
        any(stem in reduced for stem, letters in _STEM_LETTERS if letters <= present)
        or any(key in reduced for key in _KEYS)
        or (b"]" in block and _BRACKET_B.search(block) is not None)
        or (b":" in block and (_START_B.match(block) or _NL_START_B.search(block)) is not None)
    )
    has_json = block[:1] == b"{" or (b"{" in block and b"\n{" in block)
    escapes = b"\0" in reduced  # a tab, among others: Java and Go frames have one
    plain = block.isascii() and not escapes
    stack = (_STACK in reduced
             or (escapes and (b"\tat " in block or b"\ngoroutine " in block))
             or (b"(" in reduced and b"    at " in block))  # Node.js frames: "at f (file:1:2)"
    fast = plain and not levels and not has_json
    return Scan(plain, levels, has_json, fast, stack, not fast or b"E" in reduced)


def _marks(block: bytes, found: Scan) -> list[tuple[int, int, bytes]]:
    """Sorted (line start, position, word) of each level word, (line start, -1, b"") of each
    line starting with '{': a line's first entry is what ``encode_line`` acts on there."""
    marks: list[tuple[int, int, bytes]] = []
    add, find, rfind = marks.append, block.find, block.rfind
    if found.levels:
        for needle, pattern in _FINDERS if b"=" in block else _FINDERS[: len(_STEMS)]:
            i = find(needle)
            while i >= 0:
                if m := pattern.match(block, i):
                    add((rfind(b"\n", 0, i) + 1, i, m[1]))
                i = find(needle, i + 1)
        found_b = _BRACKET_B.finditer(block) if b"]" in block else ()
        found_s = _NL_START_B.finditer(block) if b":" in block else ()
        for m in (*found_b, *found_s, _START_B.match(block)):
            if m:
                i = m.start() + (m[0][:1] == b"\n")
                add((rfind(b"\n", 0, i) + 1, i, m[1]))
    if found.json:
        i = 0 if block[:1] == b"{" else find(b"\n{")
        while i >= 0:
            add((i + (block[i] == 10), -1, b""))  # 10: the newline before the brace
            i = find(b"\n{", i + 1)
    marks.sort()
    return marks


def normalise_level(value: object) -> Level | None:
    """A level value from a JSON record: a name in any case, or a pino/bunyan number."""
    if isinstance(value, str):
        return _WORDS.get(value.strip().lower())
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value >= 50:
            return "fatal" if value >= 60 else "error"
        return "warn" if value >= 40 else "info" if value >= 30 else "debug"
    return None


def parse_level(text: str) -> Level | None:
    """The level of the first level word in a plain line, if any: an uppercase word anywhere
    (``ERROR``, ``WARN``, ``CRITICAL``), lowercase only in clear forms (``[error]``,
    ``level=warn``, ``error:``/``Warning:`` at line start)."""
    match = _LEVEL_RE.search(text)
    return _WORDS[next(g for g in match.groups() if g).lower()] if match else None


class _Heads(dict[str, str]):
    """The constant middle of a record per level, built on first use. Building all five up
    front cost ~1.7 KB per idle instance (two streams), most of which never log at most
    levels (benchmark S2); a miss happens once per level, lookups stay plain dict lookups.
    ``run``: the number of a scheduled agent's run, in each of its records."""

    __slots__ = ("agent", "instance", "run", "stream")

    def __init__(self, agent: str, instance: str, stream: Stream, run: int | None = None) -> None:
        super().__init__()
        self.agent, self.instance, self.stream, self.run = agent, instance, stream, run

    def __missing__(self, level: str) -> str:
        quote = functools.partial(json.dumps, ensure_ascii=False)  # as in merged records
        run = "" if self.run is None else f',"run":{self.run:d}'
        head = (f',"agent":{quote(self.agent)},"instance":{quote(self.instance)}{run}'
                f',"stream":"{self.stream}","level":"{level}","message":')
        self[level] = head
        return head


def new_counts() -> list[int]:
    """Records written per level, indexed by ``LEVEL_RANK``: one list per agent's log."""
    return [0] * len(LEVELS)


class LineEncoder:
    """Encodes complete lines of one (agent, instance, stream) into JSON-lines bytes.

    ``counts``: the records it wrote per level (``new_counts``; shared by an agent's
    encoders), added per run of lines from the lengths the bytes replace gives, never per line
    on the fast path."""

    __slots__ = ("_heads", "agent", "counts", "default", "instance", "stream")  # one per stream

    def __init__(self, agent: str, instance: str, stream: Stream, run: int | None = None,
                 counts: list[int] | None = None) -> None:
        self.agent, self.instance, self.stream = agent, instance, stream
        self.default: Level = DEFAULT_LEVEL[stream]
        self._heads = _Heads(agent, instance, stream, run)
        self.counts = counts if counts is not None else new_counts()

    def set_run(self, run: int | None) -> None:
        """Records from now on carry this run number (a scheduled agent's next run)."""
        self._heads = _Heads(self.agent, self.instance, self.stream, run)

    def encode(self, block: bytes, ts: float, out: list[Buffer], found: Scan | None = None) -> None:
        """Append the records of ``block`` (complete lines, each ending in ``\\n``) to ``out``."""
        if not block:
            return
        found, tsr = found or scan(block), stamp_json(ts)
        if found.fast:
            return self._run(block, tsr, self.default, True, out)
        runs: list[tuple[int, Level | None]] = [(0, self.default)]  # (start, level)
        pos, last, find = 0, -1, block.find
        for start, _, word in _marks(block, found):
            if start == last:
                continue  # a later form in the same line
            if start > pos and runs[-1][1] != self.default:
                runs.append((pos, self.default))
            level = _BWORDS[word.lower()] if word else None  # None: maybe JSON, alone
            if level is None or runs[-1][1] != level:
                runs.append((start, level))
            last, pos = start, find(b"\n", start) + 1
        if pos < len(block) and runs[-1][1] != self.default:
            runs.append((pos, self.default))
        for (start, level), (end, _) in itertools.pairwise([*runs, (len(block), None)]):
            if start == end:
                continue
            if level is None:
                line = block[start : end - 1].decode("utf-8", "replace")
                out.append(_line_safe(self.encode_line(line, tsr)))
            else:
                self._run(block[start:end], tsr, level, found.plain, out)

    def _run(self, data: bytes, tsr: str, level: Level, plain: bool, out: list[Buffer]) -> None:
        """Lines sharing one level, escaped and framed by bytes methods, no per-line Python."""
        head = f'{{"timestamp":{tsr}{self._heads[level]}"'.encode()
        data = data if plain else _escape(data)
        framed = data.replace(b"\n", b'"}\n' + head)
        out.append(head)
        out.append(memoryview(framed)[: -len(head)])
        # each newline grew by the frame: the lines counted from two lengths, no scan
        self.counts[LEVEL_RANK[level]] += (len(framed) - len(data)) // (len(head) + 2)

    def encode_piece(self, raw: bytes, ts: float, *, partial: bool, merge: bool) -> bytes:
        """The record of one line (or piece of a long line) given as raw bytes."""
        text = raw.decode("utf-8", "replace")
        return _line_safe(self.encode_line(text, stamp_json(ts), partial=partial, merge=merge))

    def encode_stack(self, raw: bytes, ts: float) -> bytes:
        """One record at level error for a multi-line stack (``corral.logs.stacks``): its
        lines joined by ``\n``, the newlines at its end (and CRs before newlines) dropped."""
        text = raw.decode("utf-8", "replace").replace("\r\n", "\n").rstrip("\n")
        head = self._heads["error"]
        self.counts[LEVEL_RANK["error"]] += 1
        return _line_safe(f'{{"timestamp":{stamp_json(ts)}{head}{encode_basestring(text)}}}\n')

    def encode_line(self, line: str, tsr: str, *, partial: bool = False, merge: bool = True) -> str:
        """One record: the definition all faster paths match. ``tsr`` is ``stamp_json(ts)``; a
        trailing CR (CRLF output) is dropped."""
        if line[-1:] == "\r" and not partial:
            line = line[:-1]
        if merge and line[:1] == "{":
            try:
                return self._merge(line, tsr)
            except (ValueError, RecursionError):
                pass  # not a JSON object (or not one we can store): a plain line
        level = parse_level(line) or self.default
        self.counts[LEVEL_RANK[level]] += 1
        tail = ',"partial":true}\n' if partial else "}\n"
        return f'{{"timestamp":{tsr}{self._heads[level]}{encode_basestring(line)}{tail}'

    def _merge(self, line: str, tsr: str) -> str:
        """The record for a line holding a JSON object; ValueError if it holds none."""
        obj = _DECODER.decode(line)
        if not isinstance(obj, dict):
            raise ValueError("not an object")
        message: object = next((obj.pop(k) for k in ("message", "msg") if k in obj), "")
        if not isinstance(message, str):
            message = _dumps(message)
        key = next((k for k in ("level", "severity", "lvl") if k in obj), None)
        level = normalise_level(obj[key]) if key else None
        if key and level:
            del obj[key]  # consumed; an unknown level value is kept (as level_extracted)
        for key in [k for k in obj if k in RESERVED]:  # never ours: X -> "X_extracted"
            new = key + "_extracted"
            while new in obj:
                new += "_extracted"
            obj[new] = obj.pop(key)
        level = level or parse_level(message) or self.default
        extra = "," + _dumps(obj)[1:] if obj else "}"
        self.counts[LEVEL_RANK[level]] += 1
        return f'{{"timestamp":{tsr}{self._heads[level]}{encode_basestring(message)}{extra}\n'


def _escape(data: bytes) -> bytes:
    """Lines escaped as ``encode_basestring`` + ``_line_safe`` would, ~10x faster."""
    ascii = data.isascii()
    if not ascii:  # invalid UTF-8 -> U+FFFD, as decoding each line would give
        data = data.decode("utf-8", "replace").encode()
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")  # as encode_line: one CR before a newline goes
    for raw, escaped in _ESCAPES if not ascii else _ESCAPES[: -len(_BREAKS)]:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def _line_safe(text: str) -> bytes:
    """UTF-8, U+0085/2028/2029 escaped: valid JSON raw, but line breaks to some readers."""
    for c in _BREAKS:
        if c in text:
            text = text.replace(c, f"\\u{ord(c):04x}")
    return text.encode()


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _reject(constant: str) -> object:
    raise ValueError(f"{constant} is not JSON")  # NaN/Infinity: keep such a line as text


_DECODER = json.JSONDecoder(parse_constant=_reject)  # made once: json.loads(**kw) makes one a call


def encode_chunk(agent: str, instance: str, stream: Stream, data: bytes, ts: float) -> bytes:
    """The records for ``data`` (complete lines; a missing final newline is assumed), all
    stamped ``ts``. For callers outside the sink: no redaction, no long-line cutting."""
    out: list[Buffer] = []
    data += b"" if data.endswith(b"\n") or not data else b"\n"
    LineEncoder(agent, instance, stream).encode(data, ts, out)
    return b"".join(out)


def segments(block: bytes, max_line: int) -> list[tuple[bool, bytes]]:
    """Runs of normal lines and single over-long lines (without newline), found by jumping
    ``max_line`` bytes at a time with ``rfind``: a few C calls per chunk."""
    n, pos, start = len(block), 0, 0
    found: list[tuple[bool, bytes]] = []
    while n - pos > max_line + 1:
        j = block.rfind(b"\n", pos, pos + max_line + 1)
        if j >= 0:
            pos = j + 1
            continue
        end = block.find(b"\n", pos)
        if pos > start:
            found.append((False, block[start:pos]))
        found.append((True, block[pos:end]))
        pos = start = end + 1
    if start < n:
        found.append((False, block if start == 0 else block[start:]))
    return found


def cut_point(buf: bytes | bytearray, limit: int, secrets: tuple[bytes, ...]) -> int:
    """End of a piece of at most ``limit`` bytes: not in a UTF-8 character nor a secret."""
    cut = next((limit - k for k in range(min(4, limit)) if buf[limit - k] & 0xC0 != 0x80), limit)
    for secret in secrets:
        for start in range(max(1, cut - len(secret) + 1), cut):
            if secret.startswith(buf[start : start + len(secret)]):
                cut = start
                break
    return cut
