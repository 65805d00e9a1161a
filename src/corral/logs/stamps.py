"""Record times: RFC 3339 in UTC with microseconds (``2026-12-02T14:03:05.123456Z``).

Written once per feed (every record of a feed shares its time), so the per-line path never
formats a time; the date and seconds are remembered for the second they belong to. The fixed
width makes the stored text sort as the times do, so readers compare it as bytes. Files from
before this form hold unix seconds (a JSON number): ``seconds`` reads both.
"""

from __future__ import annotations

import time
from datetime import datetime

_last: tuple[int, str] = (-1, "")  # (whole second, its "YYYY-MM-DDTHH:MM:SS")


def rfc3339(ts: float) -> str:
    """``ts`` (unix seconds) as ``2026-12-02T14:03:05.123456Z``."""
    return quoted(ts)[1:-1]


def quoted(ts: float) -> str:
    """``rfc3339(ts)`` as a JSON string: the ``timestamp`` value as records hold it, made on
    every feed."""
    global _last
    micros = int(ts * 1e6 + 0.5)  # ts >= 0: rounded half up, one call fewer than round()
    if micros // 1_000_000 != _last[0]:
        whole = micros // 1_000_000
        _last = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f'"{_last[1]}.{micros % 1_000_000:06d}Z"'


def seconds(value: object) -> float | None:
    """A record's ``timestamp`` (RFC 3339 text, or the unix seconds of older files) as unix
    seconds; None when it is neither."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00", 1)).timestamp()
        except ValueError:
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
