"""When scheduled agents run: the times (cron through cronsim in a zone, or every), the missed
time that a catch-up makes up, and the records of a run's log lines."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from corral.logs.query import Filters, matches
from corral.logs.records import LineEncoder
from corral.manifest.spec import Schedule
from corral.manifest.timetable import cron_after
from corral.runtime.schedule import missed, next_slot
from tests.unit import test_runner_fake
from tests.unit.test_runner_fake import FakeClock, run_fleet

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(t: float) -> str:
    return datetime.fromtimestamp(t, BERLIN).isoformat()


def test_every_keeps_its_grid_and_comes_strictly_after_now() -> None:
    every = Schedule(every=10.0)
    assert next_slot(every, 100.0, 105.0) == 110.0
    assert next_slot(every, 100.0, 110.0) == 120.0  # a time that is now has come
    assert next_slot(every, 100.0, 137.5) == 140.0  # back from a pause: same phase


def test_a_time_is_missed_once_one_came_after_the_last() -> None:
    every = Schedule(every=3.0)
    assert not missed(every, None, 1000.0)  # never scheduled: nothing to make up
    assert not missed(every, 100.0, 102.9)
    assert missed(every, 100.0, 103.0)
    nightly = Schedule(cron="30 3 * * *", timezone="Europe/Berlin")
    evening = datetime(2026, 6, 1, 22, 0, tzinfo=BERLIN).timestamp()
    assert not missed(nightly, evening, evening + 5 * 3600)  # 03:00 next day
    assert missed(nightly, evening, evening + 6 * 3600)  # 04:00: 03:30 came


def test_cron_follows_the_zone_through_daylight_saving() -> None:
    # spring forward: 02:30 does not exist on 2026-03-29; it runs as the gap ends, once
    saturday = datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN).timestamp()
    first = cron_after("30 2 * * *", "Europe/Berlin", saturday)
    assert berlin(first) == "2026-03-29T03:00:00+02:00"
    assert berlin(cron_after("30 2 * * *", "Europe/Berlin", first)) \
        == "2026-03-30T02:30:00+02:00"
    # fall back: 02:30 comes twice on 2026-10-25; a daily job runs once
    night = datetime(2026, 10, 25, 0, 0, tzinfo=BERLIN).timestamp()
    once = cron_after("30 2 * * *", "Europe/Berlin", night)
    assert berlin(once) == "2026-10-25T02:30:00+02:00"
    assert berlin(cron_after("30 2 * * *", "Europe/Berlin", once)) \
        == "2026-10-26T02:30:00+01:00"
    # an hourly job stays an hour apart in real time across the repeated hour
    hours = [night]
    for _ in range(4):
        hours.append(cron_after("0 * * * *", "Europe/Berlin", hours[-1]))
    assert [b - a for a, b in itertools.pairwise(hours[1:])] == [3600.0] * 3


def test_a_runs_records_carry_its_number_and_filter_by_it() -> None:
    encoder = LineEncoder("job", "job.1", "stdout")
    out: list[bytes | memoryview] = []
    encoder.encode(b"before\n", 1.0, out)
    encoder.set_run(2)
    encoder.encode(b"plain\nERROR loud\n", 2.0, out)
    out.append(encoder.encode_piece(b'{"msg": "json", "run": "theirs"}', 3.0, partial=False,
                                    merge=True))
    records = [json.loads(line) for line in b"".join(out).splitlines()]
    assert [r.get("run") for r in records] == [None, 2, 2, 2]
    assert records[3]["run_extracted"] == "theirs"  # the agent's own field is kept aside
    second = Filters.build(run=2)
    assert [r["message"] for r in records if matches(r, second)] == ["plain", "ERROR loud",
                                                                      "json"]


JITTERED = """
name: jittered
agents:
  tick:
    isolation: fake
    command: fake
    fake: {steps: [{print: [tick]}, {exit: 0}]}
    schedule: {every: 10s, jitter: 5s}
"""


class PatientClock(FakeClock):
    """Moves on only once what is ready has run: a started run reaches its first state
    before the schedule's next sleep moves the time."""

    async def sleep(self, seconds: float) -> None:
        for _ in range(50):
            await asyncio.sleep(0)
        await super().sleep(seconds)


def test_each_scheduled_run_starts_within_its_jitter_after_its_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fake clock that moves only when slept on: the fleet comes up at 1000, so the
    times are 1010, 1020... and run N is the one of time N (the runs that come while one
    goes are skipped, and numbered too); each starts a random delay in [0, 5] s after it."""
    monkeypatch.setattr(test_runner_fake, "FakeClock", PatientClock)
    sup, _ = run_fleet(tmp_path, JITTERED, lambda s: sum(
        r.status == "succeeded" for r in s.store.runs()) >= 6)
    done = [r for r in sup.store.runs() if r.status == "succeeded"]
    delays = [r.started_at - (1000 + 10 * r.number) for r in done]
    assert all(0 <= d <= 5 for d in delays), delays
    assert len(set(delays)) > 1  # random, not one fixed offset
