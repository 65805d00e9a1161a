"""dotenv files, as python-dotenv and compose read them (see ``manifest.variables``).

Stdlib only: the daemon reads ``.env`` secrets with it without loading the manifest models.
"""

from __future__ import annotations

import re

_DOTENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(?:=\s*(.*))?", re.S)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _closing_quote(body: str, quote: str) -> int:
    i = 0
    while i < len(body):
        if quote == '"' and body[i] == "\\":
            i += 2
            continue
        if body[i] == quote:
            return i
        i += 1
    return -1


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
        quote, body = raw[0], raw[1:]
        while _closing_quote(body, quote) < 0 and i < len(lines):
            body, i = body + "\n" + lines[i], i + 1
        end = _closing_quote(body, quote)
        rest = body[end + 1 :].strip() if end >= 0 else ""
        if end < 0 or (rest and not rest.startswith("#")):
            problems.append(f"line {lineno}: unterminated quote or text after the closing quote")
            continue
        value = body[:end]
        if quote == '"':
            value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[1]), value, flags=re.S)
        values[key] = value
    return values, problems
