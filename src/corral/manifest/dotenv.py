"""dotenv files, as python-dotenv and compose read them (see ``manifest.variables``).

Stdlib only: the daemon reads ``.env`` secrets with it without the CLI's validation.
"""

from __future__ import annotations

import re

_DOTENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(?:=\s*(.*))?", re.S)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _closing_quote(chunk: str, quote: str, start: int = 0) -> tuple[int, int]:
    """The closing quote's index in ``chunk`` (or -1), and when there is none how far into
    the next chunk the scan already is (1 after a trailing backslash, else 0)."""
    i = start
    while i < len(chunk):
        if quote == '"' and chunk[i] == "\\":
            i += 2
            continue
        if chunk[i] == quote:
            return i, 0
        i += 1
    return -1, i - len(chunk)


def parse_dotenv(text: str) -> tuple[dict[str, str | None], list[str]]:
    """Values by key (None for a bare ``KEY``) and problems as ``line N: ...``."""
    values: dict[str, str | None] = {}
    problems: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        lineno, line = i + 1, lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        match = _DOTENV_LINE.fullmatch(line)
        if not match:
            problems.append(f"line {lineno}: expected KEY=VALUE, got {line[:40]!r}")
            continue
        key, raw = match.groups()
        if raw is None or raw[:1] not in ("'", '"'):
            values[key] = None if raw is None else re.split(r"\s+#", raw, maxsplit=1)[0].strip()
            continue
        # a value may span lines; each line is scanned once (rescanning the whole value for
        # every line made an unterminated quote atop a long file quadratic: it hung)
        quote, chunks = raw[0], [raw[1:]]
        end, skip = _closing_quote(chunks[0], quote)
        offset = 0  # where the last chunk starts in the value
        while end < 0 and i < len(lines):
            offset += len(chunks[-1])
            chunks.append("\n" + lines[i])
            i += 1
            found, skip = _closing_quote(chunks[-1], quote, skip)
            end = offset + found if found >= 0 else -1
        body = "".join(chunks)
        rest = body[end + 1 :].strip() if end >= 0 else ""
        if end < 0 or (rest and not rest.startswith("#")):
            problems.append(f"line {lineno}: unterminated quote or text after the closing quote")
            continue
        value = body[:end]
        if quote == '"':
            value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[1]), value, flags=re.S)
        values[key] = value
    return values, problems
