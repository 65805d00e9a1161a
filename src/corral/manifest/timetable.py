"""When a scheduled agent runs: a cron expression read by ``cronsim`` in a time zone from
``zoneinfo`` (so daylight-saving gaps and repeats are the library's, as Debian cron does
them), or a fixed period. Times are unix seconds; the manifest checks a schedule with the
same functions the daemon computes it with."""

from __future__ import annotations

from datetime import datetime, tzinfo

CRON_FORM = "five fields: minute hour day-of-month month day-of-week, e.g. '*/5 * * * *'"


def zone(name: str | None) -> tzinfo | None:
    """The named IANA zone; None: the host's local time."""
    if name is None:
        return None
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def timezone_problem(name: str) -> str | None:
    from zoneinfo import ZoneInfoNotFoundError

    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return (f"unknown time zone {name[:60]!r}: use an IANA name such as "
                "'Europe/Berlin' or 'UTC'")
    return None


def cron_problem(expr: str) -> str | None:
    from cronsim import CronSim, CronSimError

    if len(expr.split()) != 5:
        return f"{expr[:60]!r} is not a cron expression: it needs {CRON_FORM}"
    try:
        CronSim(expr, datetime.now().astimezone())
    except CronSimError as exc:
        return f"{expr[:60]!r} is not a cron expression ({str(exc).lower()}): it needs {CRON_FORM}"
    return None


def cron_after(expr: str, zone_name: str | None, after: float) -> float:
    """The first time strictly after ``after`` that ``expr`` names, in the zone."""
    from cronsim import CronSim

    start = datetime.fromtimestamp(after).astimezone(zone(zone_name))
    return next(CronSim(expr, start)).timestamp()
