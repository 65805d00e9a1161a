"""Durations ("500ms", "10s", "1m30s", 2.5) and sizes ("256M", "1GiB", 1024) as plain numbers.

Both are bounded here (``bounds.MAX_DURATION``, ``bounds.MAX_SIZE``) so the message names the
bound in the user's units, and so nothing infinite, NaN or overflowing comes out: ``1e999``,
``nan``, 400-digit numbers and ``99999999999999999999h`` are refused, not turned into ``inf``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from corral.manifest.bounds import MAX_DURATION, MAX_SIZE

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _seconds(value: Any, seconds: float) -> float:
    if not math.isfinite(seconds) and not seconds > 0:  # nan, -inf
        raise ValueError(f"{_shown(value)} is not a duration: write e.g. '10s', '500ms', '1m30s'")
    if seconds > MAX_DURATION:
        raise ValueError(f"{_shown(value)} is too long: a duration is at most 365d (one year, "
                         f"{MAX_DURATION:.0f} seconds)")
    return seconds


def parse_duration(value: Any) -> Any:
    """Seconds as a float. Numbers are seconds; strings combine parts like ``1h30m``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '10s', '500ms', '1m'")
    if isinstance(value, (int, float)):
        try:
            return _seconds(value, float(value))
        except OverflowError:  # an int past float's range
            return _seconds(value, math.inf)
    if not isinstance(value, str):
        return value
    text = value.strip().lower().replace(" ", "")
    try:
        return _seconds(value, float(text))
    except (ValueError, OverflowError) as exc:
        if "duration" in str(exc):
            raise
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{_shown(value)} is not a duration: write e.g. '10s', '500ms', '1m30s'")
    return _seconds(value, total)


def parse_size(value: Any) -> Any:
    """Bytes as an int. ``256M``, ``256MB``, ``256MiB`` all mean 256 * 1024**2, as in compose."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like '256M', '1G'")
    if isinstance(value, int):
        return _bytes(value, value)
    if isinstance(value, float):
        return _bytes(value, value)
    if not isinstance(value, str):
        return value
    match = _SIZE.match(value.strip())
    if not match:
        raise ValueError(f"{_shown(value)} is not a size: write e.g. '512K', '256M', '2G'")
    return _bytes(value, float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def _bytes(value: Any, size: float) -> int:
    if isinstance(size, float) and not math.isfinite(size) and not size > 0:  # nan, -inf
        raise ValueError(f"{_shown(value)} is not a size: write e.g. '512K', '256M', '2G'")
    if size > MAX_SIZE:
        raise ValueError(f"{_shown(value)} is too large: a size is at most 1024T (1 PiB, "
                         f"{MAX_SIZE} bytes)")
    return int(size)
