"""Durations ("500ms", "10s", "1m30s", 2.5) and sizes ("256M", "1GiB", 1024) as plain numbers."""

from __future__ import annotations

import re
from typing import Any

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_duration(value: Any) -> Any:
    """Seconds as a float. Numbers are seconds; strings combine parts like ``1h30m``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '10s', '500ms', '1m'")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return value
    text = value.strip().lower().replace(" ", "")
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration: write e.g. '10s', '500ms', '1m30s'")
    return total


def parse_size(value: Any) -> Any:
    """Bytes as an int. ``256M``, ``256MB``, ``256MiB`` all mean 256 * 1024**2, as in compose."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like '256M', '1G'")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if not isinstance(value, str):
        return value
    match = _SIZE.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a size: write e.g. '512K', '256M', '2G'")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
