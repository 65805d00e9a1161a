"""Every request checked against the OpenAPI description before a handler sees it.

The daemon cannot afford jsonschema or pydantic (benchmark S2: they would stay resident for
the life of the fleet), so this is a small validator for the subset of JSON Schema that
``openapi.py`` uses: ``type`` (one or a list, ``null`` included), ``properties``,
``required``, ``additionalProperties`` (false or a schema), ``items``, ``maxItems``,
``minimum``/``maximum``, ``enum``, ``pattern``, ``minLength``/``maxLength`` and
``format: regex``. The schemas it checks are the very dicts the served document is made of,
so the two cannot drift apart; a keyword this module does not know is an error at import of
the test suite (``test_api_validate``), not a silently skipped rule.

JSON is parsed with bounds: nesting deeper than ``MAX_DEPTH``, non-finite numbers (``1e400``,
``NaN``, ``Infinity``) and integers of more than ``MAX_INT_DIGITS`` digits are refused before
any handler runs. Each problem is one ``BadRequest`` (400) naming where it is and what was
expected.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from corral.errors import CorralError

MAX_DEPTH = 64
MAX_INT_DIGITS = 19  # the size of an int64: more is never a count, a size or a time here
FIX = "see the API description at GET /openapi.json"
KNOWN = frozenset({"type", "properties", "required", "additionalProperties", "items",
                   "maxItems", "minimum", "maximum", "enum", "pattern", "minLength",
                   "maxLength", "format", "description", "default"})


class BadRequest(CorralError):
    """A request that does not match the API description: answered 400."""


def _refuse_constant(name: str) -> Any:
    raise BadRequest(f"JSON constant {name} is not allowed", "send finite numbers")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest(f"number {text[:40]} is out of range", "send a finite number")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BadRequest(f"integer {text[:24]}... has more than {MAX_INT_DIGITS} digits",
                         "send a smaller number")
    return int(text)


def parse_json(body: bytes) -> Any:
    """The body's JSON value (``{}`` for an empty body), within the bounds above."""
    if not body.strip():
        return {}
    try:  # decoded here: json.loads would take bytes in UTF-16 or UTF-32 as well
        value = json.loads(body.decode(), parse_float=_finite, parse_int=_bounded_int,
                           parse_constant=_refuse_constant)
    except RecursionError:  # json's C scanner stops at the interpreter's recursion limit
        raise BadRequest(f"JSON nested deeper than {MAX_DEPTH} levels", FIX) from None
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8", "send JSON encoded as UTF-8") from None
    except ValueError as exc:  # json.JSONDecodeError included
        raise BadRequest(f"the body is not JSON: {exc}", FIX) from None
    if _deeper_than(value, MAX_DEPTH):
        raise BadRequest(f"JSON nested deeper than {MAX_DEPTH} levels", FIX)
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` deep (stops as soon as they do)."""
    if not isinstance(value, dict | list):
        return False
    if limit <= 0:
        return True
    children = value.values() if isinstance(value, dict) else value
    return any(_deeper_than(child, limit - 1) for child in children)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _is(kind: str, value: Any) -> bool:
    actual = _kind(value)
    return actual == kind or (kind == "number" and actual == "integer")


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


_patterns: dict[str, re.Pattern[str]] = {}


def _pattern(source: str) -> re.Pattern[str]:
    if source not in _patterns:
        _patterns[source] = re.compile(source)
    return _patterns[source]


def _matches(source: str, value: str) -> bool:
    """ECMA-262's reading of a pattern, as JSON Schema has it: a final ``$`` is the end of
    the text, where Python's also matches before a trailing newline (``"web\\n"``)."""
    found = _pattern(source).search(value)
    return found is not None and (not source.endswith("$") or found.end() == len(value))


def check(schema: dict[str, Any], value: Any, where: str) -> None:
    """Raise ``BadRequest`` naming the first place ``value`` breaks ``schema``."""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(k, value) for k in kinds):
            raise BadRequest(f"{where}: expected {' or '.join(kinds)}, got {_kind(value)} "
                             f"{_show(value)}", FIX)
    if "enum" in schema and not any(value == e and _kind(value) == _kind(e)
                                    for e in schema["enum"]):
        raise BadRequest(f"{where}: expected one of {', '.join(map(_show, schema['enum']))}, "
                         f"got {_show(value)}", FIX)
    if isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(schema, value, where)
    elif isinstance(value, str):
        _check_string(schema, value, where)
    elif isinstance(value, list):
        if len(value) > schema.get("maxItems", math.inf):
            raise BadRequest(f"{where}: more than {schema['maxItems']} items", FIX)
        items: dict[str, Any] = schema.get("items", {})
        for i, item in enumerate(value):
            check(items, item, f"{where}[{i}]")
    elif isinstance(value, dict):
        _check_object(schema, value, where)


def _check_number(schema: dict[str, Any], value: float, where: str) -> None:
    if value < schema.get("minimum", -math.inf):
        raise BadRequest(f"{where}: must be at least {schema['minimum']}, got {_show(value)}",
                         FIX)
    if value > schema.get("maximum", math.inf):
        raise BadRequest(f"{where}: must be at most {schema['maximum']}, got {_show(value)}",
                         FIX)


def _check_string(schema: dict[str, Any], value: str, where: str) -> None:
    if len(value) < schema.get("minLength", 0):
        raise BadRequest(f"{where}: must not be empty" if schema["minLength"] == 1 else
                         f"{where}: shorter than {schema['minLength']} characters", FIX)
    if len(value) > schema.get("maxLength", math.inf):
        raise BadRequest(f"{where}: longer than {schema['maxLength']} characters", FIX)
    if "pattern" in schema and not _matches(schema["pattern"], value):
        raise BadRequest(f"{where}: {_show(value)} does not match {schema['pattern']}", FIX)
    if schema.get("format") == "regex":
        try:
            re.compile(value)
        except (re.error, RecursionError, OverflowError) as exc:
            raise BadRequest(
                f"{where}: {_show(value)} is not a valid regular expression: {exc}",
                "escape special characters such as ( [ * with \\") from None


def _check_object(schema: dict[str, Any], value: dict[str, Any], where: str) -> None:
    properties: dict[str, Any] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            raise BadRequest(f"{where}: missing {name}", FIX)
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            check(properties[name], item, f"{where}.{name}")
        elif extra is False:
            allowed = ", ".join(properties) or "none"
            raise BadRequest(f"{where}: unknown field {_show(name)} (allowed: {allowed})", FIX)
        elif isinstance(extra, dict):
            check(extra, item, f"{where}.{name}")


_INTEGER = re.compile(f"-?[0-9]{{1,{MAX_INT_DIGITS}}}")


def _query_value(schema: dict[str, Any], text: str, where: str) -> Any:
    """A query string's text as the type its schema names (they all arrive as text)."""
    if schema.get("type") == "integer":
        if not _INTEGER.fullmatch(text):
            raise BadRequest(f"{where}: expected an integer, got {_show(text)}", FIX)
        return int(text)
    return text


def query(parameters: list[dict[str, Any]], given: dict[str, list[str]]) -> dict[str, Any]:
    """The query's values by name, typed and checked against the operation's parameters:
    an array parameter may repeat (``agent=a&agent=b``), any other is given once; unknown
    names are refused."""
    known = {p["name"]: p for p in parameters}
    out: dict[str, Any] = {}
    for name, texts in given.items():
        param = known.get(name)
        where = f"query parameter {name}"
        if param is None:
            allowed = ", ".join(known) or "none"
            raise BadRequest(f"unknown query parameter {_show(name)} (allowed: {allowed})",
                             FIX)
        schema = param["schema"]
        if schema.get("type") == "array":
            values = [_query_value(schema["items"], t, f"{where}[{i}]")
                      for i, t in enumerate(texts)]
        elif len(texts) > 1:
            raise BadRequest(f"{where} is given {len(texts)} times", "give it once")
        else:
            values = _query_value(schema, texts[0], where)
        check(schema, values, where)
        out[name] = values
    for name, param in known.items():
        if param.get("required") and name not in out:
            raise BadRequest(f"missing query parameter {name}", FIX)
    return out
