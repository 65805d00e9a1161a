from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from corral.logs import query
from corral.logs.query import (
    Filters,
    agents_in,
    decode,
    iter_records,
    matches,
    parse_since,
    tail,
)
from corral.logs.sink import AgentLog, InstanceOutput


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write(directory: Path, agent: str, items: list[tuple[float, str, bytes]], **kw: int) -> None:
    """(ts, instance, data) fed in order into ``agent``'s log."""
    clock = Clock(0.0)
    log = AgentLog(directory, agent, clock=clock, **kw)
    outs: dict[str, InstanceOutput] = {}
    for ts, instance, data in items:
        clock.now = ts
        out = outs.setdefault(instance, log.writer(instance))
        out.feed("stderr" if b"ERR" in data else "stdout", data)
    log.close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    write(
        tmp_path,
        "web",
        [
            (1.0, "web.1", b"w1 start\n"),
            (3.0, "web.2", b"w2 hello\nw2 again\n"),
            (5.0, "web.1", b"WARN w1 slow\n"),
            (7.0, "web.1", b"ERROR w1 broke\n"),
        ],
    )
    write(
        tmp_path,
        "db",
        [
            (2.0, "db.1", b"db up\n"),
            (3.0, "db.1", b"db tie\n"),
            (6.0, "db.1", b'{"msg": "db json", "level": "fatal", "table": "t"}\n'),
        ],
    )
    return tmp_path


def msgs(recs: object) -> list[str]:
    return [r["message"] for r in recs]  # type: ignore[attr-defined]


def test_merge_in_timestamp_order_stable_for_ties(store: Path) -> None:
    assert agents_in(store) == ["db", "web"]
    assert msgs(iter_records(store)) == [
        "w1 start",
        "db up",
        "db tie",
        "w2 hello",
        "w2 again",
        "WARN w1 slow",
        "db json",
        "ERROR w1 broke",
    ]
    # equal ts: the order of ``agents``, then file order
    assert msgs(iter_records(store, ["web", "db"], since=3, until=3)) == [
        "w2 hello",
        "w2 again",
        "db tie",
    ]


def test_filters(store: Path) -> None:
    assert msgs(iter_records(store, ["web"])) == [
        "w1 start",
        "w2 hello",
        "w2 again",
        "WARN w1 slow",
        "ERROR w1 broke",
    ]
    assert msgs(iter_records(store, since=5.0)) == ["WARN w1 slow", "db json", "ERROR w1 broke"]
    assert msgs(iter_records(store, until=2.0)) == ["w1 start", "db up"]
    assert msgs(iter_records(store, grep=r"w\d (slow|broke)")) == ["WARN w1 slow", "ERROR w1 broke"]
    assert msgs(iter_records(store, level="error")) == ["db json", "ERROR w1 broke"]
    assert msgs(iter_records(store, level="warn", instances=["web.1"])) == [
        "WARN w1 slow",
        "db json",
        "ERROR w1 broke",
    ]  # an instance restricts its own agent only
    assert msgs(iter_records(store, ["web"], instances=["web.2"])) == ["w2 hello", "w2 again"]
    assert msgs(iter_records(store, ["web"], instances=["web.9"])) == []
    with pytest.raises(ValueError, match="unknown level"):
        list(iter_records(store, level="loud"))
    with pytest.raises(ValueError, match="not a valid regex"):
        list(iter_records(store, grep="("))


def test_rotated_files_are_read_oldest_first(tmp_path: Path) -> None:
    items = [(float(i), "web.1", f"line {i:02d}\n".encode()) for i in range(60)]
    write(tmp_path, "web", items, max_size=400, keep=50)
    assert len(list(tmp_path.iterdir())) > 3
    assert msgs(iter_records(tmp_path)) == [f"line {i:02d}" for i in range(60)]
    assert msgs(tail(tmp_path, None, 5)) == [f"line {i:02d}" for i in range(55, 60)]
    assert msgs(tail(tmp_path, ["web"], 3, until=20)) == ["line 18", "line 19", "line 20"]


def test_tail_reads_backwards_across_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(query, "_BLOCK", 37)  # records straddle every block boundary
    items = [
        (float(i), f"web.{i % 2}", f"{'ERROR' if i % 7 == 0 else 'ok'} {i}\n".encode())
        for i in range(100)
    ]
    write(tmp_path, "web", items)
    write(tmp_path, "db", [(50.5, "db.1", b"db mid\n")])
    # N per agent, as compose's --tail: db's one record comes too
    assert msgs(tail(tmp_path, None, 3)) == ["db mid", "ok 97", "ERROR 98", "ok 99"]
    errors = ["ERROR 77", "ERROR 84", "ERROR 91", "ERROR 98"]
    assert msgs(tail(tmp_path, ["web"], 4, level="error")) == errors
    assert msgs(tail(tmp_path, None, 3, until=51)) == ["ERROR 49", "ok 50", "db mid", "ok 51"]
    assert msgs(tail(tmp_path, ["web"], 2, instances=["web.1"], grep="9$")) == ["ok 89", "ok 99"]
    assert len(tail(tmp_path, None, 1000)) == 101
    assert tail(tmp_path, None, 0) == []


def test_damaged_lines_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "web", [(1.0, "web.1", b"good\n")])
    with (tmp_path / "web.log").open("ab") as f:
        f.write(b'{"timestamp":2.0,"agent":"web","instance":"web.1","mess\nnot json\n[1]\n'
                b'{"timestamp":"x"}\n')
    write(tmp_path, "web", [(3.0, "web.1", b"also good\n")])
    assert msgs(iter_records(tmp_path)) == ["good", "also good"]
    assert msgs(tail(tmp_path, None, 5)) == ["good", "also good"]


def test_follow_filtering_with_matches_and_decode(tmp_path: Path) -> None:
    log = AgentLog(tmp_path, "web", clock=Clock(100.0))
    seen: list[bytes] = []
    log.subscribe(seen.append)
    log.writer("web.1").feed("stdout", b"hello\nWARN careful\n")
    filters = Filters.build(level="warn", since=50.0)
    assert msgs(r for r in decode(b"".join(seen)) if matches(r, filters)) == ["WARN careful"]
    assert not matches({"message": "no ts"}, Filters())
    warn = {"timestamp": 1.0, "instance": "web.1", "level": "warn", "message": "disk 91%"}
    warn["agent"] = "web"
    assert matches(warn, level="warn", grep=r"\d+%", instances=["web.1"])
    assert not matches(warn, level="error") and not matches(warn, instances=["web.2"])
    log.close()


def test_parse_since() -> None:
    now = 1_700_000_000.0
    assert parse_since("10m", now) == now - 600
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1h30m", now) == now - 5400
    assert parse_since("1.5s", now) == now - 1.5
    assert parse_since("250ms", now) == now - 0.25
    assert parse_since("1d", now) == now - 86400
    assert parse_since("1700000123", now) == 1700000123.0
    assert parse_since("1700000123.5", now) == 1700000123.5
    iso = datetime(2024, 11, 25, 10, 0, tzinfo=UTC).timestamp()
    assert parse_since("2024-11-25T10:00:00Z", now) == iso
    assert parse_since("2024-11-25T12:00:00+02:00", now) == iso
    assert parse_since("2024-11-25T10:00", now) == datetime(2024, 11, 25, 10, 0).timestamp()
    assert parse_since(" 5m ", None) <= parse_since("4m", None)
    for bad in ("", "soon", "10x", "m", "2024-13-01", "nan", "inf"):
        with pytest.raises(ValueError, match="cannot read"):
            parse_since(bad, now)


def test_records_round_trip_through_store(tmp_path: Path) -> None:
    write(tmp_path, "web", [(1.0, "web.1", b'tab\there "q" \\ caf\xc3\xa9 \xff\n')])
    (rec,) = iter_records(tmp_path)
    assert rec["message"] == 'tab\there "q" \\ caf\u00e9 \ufffd'
    assert json.loads(json.dumps(rec)) == rec


def test_since_skips_rotated_files_last_written_before_it(tmp_path: Path) -> None:
    import os

    items = [(1000.0 + i, "web.1", f"line {i:02d}\n".encode()) for i in range(30)]
    write(tmp_path, "web", items, max_size=300, keep=50)
    oldest = tmp_path / f"web.log.{max(int(p.suffix[1:]) for p in tmp_path.glob('web.log.*'))}"
    os.utime(oldest, (500.0, 500.0))  # claims to be last written long before ``since``
    skipped = set(msgs(iter_records(tmp_path))) - set(msgs(iter_records(tmp_path, since=900)))
    assert skipped and skipped == {r["message"] for r in decode(oldest.read_bytes())}
    assert msgs(tail(tmp_path, None, 100, since=900)) == msgs(iter_records(tmp_path, since=900))


def test_an_empty_or_missing_store_has_no_records(tmp_path: Path) -> None:
    assert agents_in(tmp_path / "missing") == []
    assert list(iter_records(tmp_path / "missing")) == []
    assert tail(tmp_path / "missing", None, 10) == []
    assert list(iter_records(tmp_path, ["nobody"])) == []


def test_abandoned_iteration_closes_files(store: Path) -> None:
    import gc

    records = iter_records(store)
    assert next(records)["message"] == "w1 start"
    del records
    gc.collect()  # a leaked file would raise ResourceWarning (an error under pytest here)


def test_text_and_numeric_timestamps_read_together(tmp_path: Path) -> None:
    """Files written before the RFC 3339 form hold unix seconds: both sort and filter."""
    old = datetime(2024, 12, 2, 14, 0, tzinfo=UTC).timestamp()
    (tmp_path / "old.log").write_text("".join(
        json.dumps({"timestamp": old + i, "agent": "old", "instance": "old.1",
                    "stream": "stdout", "level": "info", "message": f"old {i}"}) + "\n"
        for i in (0, 2, 4)))
    write(tmp_path, "new", [(old + 1, "new.1", b"new 1\n"), (old + 3, "new.1", b"new 3\n")])
    assert json.loads((tmp_path / "new.log").read_text().splitlines()[0])["timestamp"] == (
        "2024-12-02T14:00:01.000000Z")
    assert msgs(iter_records(tmp_path)) == ["old 0", "new 1", "old 2", "new 3", "old 4"]
    assert msgs(iter_records(tmp_path, since=old + 1, until=old + 3)) == [
        "new 1", "old 2", "new 3"]
    assert msgs(tail(tmp_path, None, 1, until=old + 3.5)) == ["old 2", "new 3"]


def test_a_follow_shows_each_record_of_a_burst_of_one_time_once(
        capsys: pytest.CaptureFixture[str]) -> None:
    """``corral logs -f`` reads the history after subscribing, so the records of that moment
    come twice: the copies are dropped, however many lines share the moment (a set: a
    10,000-line burst was quadratic)."""
    import argparse

    from corral.cli.commands.logs import _View

    view = _View(argparse.Namespace(no_color=True, json=True, raw=False, timestamps=False),
                 width=100)
    burst = [{"timestamp": "2026-12-03T09:00:00.000000Z", "agent": "a", "instance": "a.1",
              "stream": "stdout", "level": "info", "message": f"line {i}"} for i in range(10_000)]
    for rec in burst + burst[:5000]:  # the history's copies of the moment, then the stream
        if view.new(rec):
            view.show(rec, None)
    later = {**burst[0], "timestamp": "2026-12-03T09:00:01.000000Z"}
    assert view.new(later) and not view.new(burst[-1])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10_000 and len(set(lines)) == 10_000
