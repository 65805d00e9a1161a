"""Where variables come from and where they go: ``${VAR}`` interpolation, ``.env``, env files.

Interpolation follows compose: ``$VAR``, ``${VAR}``, ``${VAR:-default}`` (unset or empty),
``${VAR-default}`` (unset), ``${VAR:?message}`` / ``${VAR?message}`` (required),
``${VAR:+alt}`` / ``${VAR+alt}``, nested (``${A:-${B}}``), and ``$$`` for a literal ``$``.
A ``$`` not followed by a name or ``{`` stays as it is. An unset variable without a default
becomes "" with a warning, once per variable, in compose's words (the CLI prints it as
``WARN: The "X" variable is not set. Defaulting to a blank string.``).

``$VAR`` is filled from corral's environment (and ``.env``) when the manifest is loaded, not by
the agent's shell; ``$$VAR`` reaches the agent as a literal ``$VAR``.

dotenv files follow python-dotenv/compose: ``KEY=VALUE``, an optional ``export`` prefix, ``#``
comments (inline ones need a space before ``#`` in unquoted values), 'single' quotes literal,
"double" quotes with ``\\n \\t \\r \\" \\\\`` escapes that may span lines, and ``KEY`` alone
meaning "take it from the environment". An agent's env files sit under its explicit ``env``.
Env file values are not interpolated: a ``$`` in a secret stays a ``$``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.manifest import files
from corral.manifest.classes import absolute
from corral.manifest.dotenv import parse_dotenv
from corral.manifest.hints import dotted

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_NESTING = 16  # ${A:-${B:-...}} levels; each is a recursion and a scan of the rest
# characters substituted in all: 250,000 ${A} of a 1 MiB variable would be 250 GB
MAX_SUBSTITUTED = 4 << 20
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", re.S)


def _closing_brace(text: str, start: int) -> int:
    depth, i = 1, start
    while i < len(text):
        if text.startswith("$$", i) or text.startswith("${", i):
            depth += text[i + 1] == "{"
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


@dataclass
class Interpolator:
    """Substitutes ``variables`` into strings, collecting problems and warnings with paths."""

    variables: Mapping[str, str]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _warned: set[str] = field(default_factory=set)  # names; 20,000 unset: no list scan
    _substituted: int = 0

    def walk(self, value: Any, loc: tuple[Any, ...] = ()) -> Any:
        """Every string value in nested mappings and lists (keys are left alone)."""
        if isinstance(value, str):
            return self.text(value, dotted(loc) or "top level")
        if isinstance(value, dict):
            return {k: self.walk(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v, (*loc, i)) for i, v in enumerate(value)]
        return value

    def text(self, text: str, path: str, depth: int = 0) -> str:
        if "$" not in text:  # most strings: no per-character walk
            return text
        if depth > MAX_NESTING:
            self.problems.append(f"{path}: ${{...}} nested more than {MAX_NESTING} levels deep "
                                 "(use fewer defaults within defaults)")
            return ""
        out: list[str] = []
        i = 0
        while i < len(text):
            nxt = text[i + 1 : i + 2]
            if text[i] != "$" or not nxt:
                dollar = text.find("$", i + 1)  # the plain run up to the next $, in one go
                end = len(text) if dollar < 0 else dollar
                out.append(text[i:end])
                i = end
            elif nxt == "$":
                out.append("$")
                i += 2
            elif nxt == "{":
                end = _closing_brace(text, i + 2)
                if end < 0:
                    self.problems.append(
                        f"{path}: unterminated ${{ in {text!r} (close it with }} "
                        "or write $$ for a literal $)"
                    )
                    return "".join(out)
                out.append(self._braced(text[i + 2 : end], path, depth))
                i = end + 1
            elif match := _NAME.match(text, i + 1):
                out.append(self._braced(match.group(), path, depth))
                i = match.end()
            else:
                out.append("$")
                i += 1
        return "".join(out)

    def _braced(self, inner: str, path: str, depth: int) -> str:
        match = _BRACED.fullmatch(inner)
        if not match:
            self.problems.append(
                f"{path}: invalid interpolation ${{{inner}}} "
                "(write ${NAME}, ${NAME:-default}, ${NAME:?message}, or $$ for a literal $)"
            )
            return ""
        name, op, arg = match.groups()
        value = self.variables.get(name)
        if value is not None:
            self._substituted += len(value)
            if self._substituted > MAX_SUBSTITUTED:
                if self._substituted - len(value) <= MAX_SUBSTITUTED:  # said once
                    self.problems.append(f"{path}: variables substitute more than "
                                         f"{MAX_SUBSTITUTED >> 20} MiB of text in all "
                                         f"(${{{name}}} is {len(value)} characters)")
                return ""
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op is None:
            if value is None and name not in self._warned:  # once per variable, as compose
                self._warned.add(name)
                self.warnings.append(
                    f'The "{name}" variable is not set. Defaulting to a blank string.')
            return value or ""
        if op.endswith("-"):
            return self.text(arg, path, depth + 1) if unset else str(value)
        if op.endswith("+"):
            return "" if unset else self.text(arg, path, depth + 1)
        if unset:
            message = self.text(arg, path, depth + 1) or "set it in the environment or in .env"
            self.problems.append(f"{path}: required variable {name} is missing: {message}")
        return value or ""


def fill_bare(pairs: Iterable[tuple[Any, Any]], variables: Mapping[str, str]) -> dict[Any, Any]:
    """A ``KEY`` without a value takes it from ``variables``, or is left out (compose)."""
    return {
        k: (variables[k] if v is None else v) for k, v in pairs if v is not None or k in variables
    }


def env_file_entries(value: Any, base: Path) -> Any:
    """``.env`` / ``[a, {path: b, required: false}]`` → a list of mappings whose paths are
    absolute (relative ones start at ``base``); anything else is left for pydantic to report."""
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list):
        return value
    entries = [{"path": v} if isinstance(v, str) else v for v in value]
    return [
        {**e, "path": str(absolute(base, e["path"]))}
        if isinstance(e, dict) and isinstance(e.get("path"), str)
        else e
        for e in entries
    ]


def read_dotenv(
    path: Path, where: str, variables: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The file's variables (bare keys filled from ``variables``), problems prefixed ``where``."""
    try:
        values, problems = parse_dotenv(files.read_text(path))
    except files.Unreadable as exc:
        return {}, [f"{where}: {path}: {exc}"]
    except OSError as exc:
        return {}, [f"{where}: cannot read {path}: {exc.strerror or exc}"]
    return fill_bare(values.items(), variables), [f"{where}: {path}, {p}" for p in problems]


def agent_env(name: str, spec: Any, variables: Mapping[str, str]) -> tuple[Any, list[str]]:
    """The agent's ``env`` as one mapping: env files (in order) under the explicit entries.

    ``env_file`` entries must already be ``{path: ABSOLUTE, required: ...}`` mappings.
    """
    if not isinstance(spec, dict):
        return spec, []
    env = spec.get("env", {})
    if isinstance(env, list):
        env = {k: (v if sep else None) for k, sep, v in (str(i).partition("=") for i in env)}
    if not isinstance(env, dict):
        return spec, []  # pydantic reports it
    merged: dict[str, str] = {}
    problems: list[str] = []
    entries = spec.get("env_file", [])
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)):
            continue
        path, where = Path(entry["path"]), f"agents.{name}.env_file[{i}]"
        if files.is_file(path):
            values, found = read_dotenv(path, where, variables)
            merged.update(values)
            problems.extend(found)
        elif entry.get("required", True) is not False and files.path_problem(str(path)) is None:
            # (a name too long is reported once, by the strings check)
            problems.append(
                f"{where}: file not found: {path} (create it or mark it required: false)"
            )
    return {**spec, "env": {**merged, **fill_bare(env.items(), variables)}}, problems


def escaped(value: Any) -> Any:
    """Every ``$`` in ``value``'s strings written ``$$``: final values (a loaded manifest's)
    as text that interpolation, corral's or compose's, reads back unchanged."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {k: escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escaped(v) for v in value]
    return value
