"""cron (the five fields corral accepts) to systemd's ``OnCalendar=``.

systemd's calendar events are not cron: fields go ``DOW Y-M-D H:M:S``, steps are ``start/step``,
ranges of days of the week are ``Mon..Fri``, and every field must hold. cron runs when the day
of the month OR the day of the week matches once both are restricted (Vixie cron's rule), so
such an expression becomes two events; a timer fires at the union of its ``OnCalendar=`` lines.
"""

from __future__ import annotations

from corral.errors import CorralError

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
SYSTEMD_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
# field: (low, high, names that stand for numbers starting at the name's index + offset)
FIELDS = {"minute": (0, 59), "hour": (0, 23), "day": (1, 31), "month": (1, 12),
          "weekday": (0, 7)}


def _number(text: str, kind: str, expr: str) -> int:
    low, high = FIELDS[kind]
    word = text.lower()
    if kind == "month" and word in MONTHS:
        return MONTHS.index(word) + 1
    if kind == "weekday" and word in DAYS:
        return DAYS.index(word)
    if not text.isdigit() or not low <= int(text) <= high:
        raise CorralError(f"cron {expr!r}: {text!r} is not a {kind} ({low}-{high})",
                          "write the schedule with numbers, names, ranges, lists and steps "
                          "only (systemd timers have no L, W or #)")
    return int(text)


def _values(part: str, kind: str, expr: str) -> list[int] | None:
    """The values one comma-separated item names; None for a bare ``*``."""
    base, _, step_text = part.partition("/")
    step = _number(step_text, "minute", expr) if step_text else 1  # a step is 0-59
    if step < 1:
        raise CorralError(f"cron {expr!r}: a step of 0", "write steps of 1 or more")
    low, high = FIELDS[kind]
    if base == "*":
        if not step_text:
            return None
        start, end = (low, 6 if kind == "weekday" else high)
    elif "-" in base:
        a, b = base.split("-", 1)
        start, end = _number(a, kind, expr), _number(b, kind, expr)
    else:
        start = _number(base, kind, expr)
        end = (6 if kind == "weekday" else high) if step_text else start
    if end < start:
        if kind == "weekday" and end == 0:
            end = 7
        else:
            raise CorralError(f"cron {expr!r}: the range {base!r} runs backwards",
                              "write ranges low-high")
    return list(range(start, end + 1, step))


def _field(text: str, kind: str, expr: str) -> list[int] | None:
    """Sorted values of a whole field; None when it is unrestricted."""
    found: set[int] = set()
    for part in text.split(","):
        values = _values(part, kind, expr)
        if values is None:
            return None
        found.update(values)
    if kind == "weekday":
        found = {v % 7 for v in found}
        if found == set(range(7)):
            return None
    elif kind != "weekday" and found == set(range(FIELDS[kind][0], FIELDS[kind][1] + 1)):
        return None
    return sorted(found)


def _runs(values: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][1] == v - 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def _numbers(values: list[int] | None, width: int) -> str:
    if values is None:
        return "*"
    parts = []
    for a, b in _runs(values):
        parts.append(f"{a:0{width}d}" if a == b else f"{a:0{width}d}..{b:0{width}d}")
    return ",".join(parts)


def _weekdays(values: list[int]) -> str:
    return ",".join(SYSTEMD_DAYS[a] if a == b else f"{SYSTEMD_DAYS[a]}..{SYSTEMD_DAYS[b]}"
                    for a, b in _runs(values))


def on_calendar(expr: str, timezone: str | None = None) -> list[str]:
    """The ``OnCalendar=`` values that fire when cron ``expr`` would, in ``timezone``."""
    fields = expr.split()
    if len(fields) != 5:
        raise CorralError(f"cron {expr!r} does not have five fields",
                          "write minute hour day-of-month month day-of-week")
    minute, hour, day, month, weekday = (
        _field(text, kind, expr) for text, kind in zip(fields, FIELDS, strict=True))
    zone = f" {timezone}" if timezone else ""
    time = f"{_numbers(hour, 2)}:{_numbers(minute, 2)}:00"
    by_date = f"*-{_numbers(month, 2)}-{_numbers(day, 2)} {time}{zone}"
    if weekday is None:
        return [by_date]
    by_weekday = f"{_weekdays(weekday)} *-{_numbers(month, 2)}-* {time}{zone}"
    if day is None:
        return [by_weekday]
    return [by_date, by_weekday]  # cron's OR of the two day fields
