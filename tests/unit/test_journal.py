"""The journal's reading of snapshot changes, the store's bounded events, and the stuck-agent
checks (silence, heartbeat) as pure functions."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest

from corral.drivers.host import looks
from corral.runtime import health, store
from corral.runtime.journal import changes
from corral.runtime.state import Health, State
from corral.runtime.views import Snapshot

RUN = Snapshot(name="w.1", agent="w", index=1, state=State.RUNNING, health=Health.HEALTHY,
               pid=10)


def _kinds(old: Snapshot, new: Snapshot) -> list[str]:
    return [e["event"] for e in changes(old, new, 1.0)]


def test_a_crash_that_restarts_is_a_restart_with_its_reason() -> None:
    new = replace(RUN, state=State.BACKOFF, restarts=1, exit_code=3, pid=None,
                  reason="exited with code 3; restarting in 1s")
    (event,) = changes(RUN, new, 5.0)
    assert event["event"] == "restart" and event["previous"] == "running"
    assert event["exit_code"] == 3 and event["reason"].startswith("exited with code 3")
    assert event["time"] == 5.0 and event["instance"] == "w.1"


def test_an_oom_kill_comes_before_what_follows_it() -> None:
    new = replace(RUN, state=State.BACKOFF, restarts=1, oom_killed=True)
    assert _kinds(RUN, new) == ["oom", "restart"]
    assert _kinds(RUN, replace(new, state=State.FATAL)) == ["oom", "fatal"]
    # a stale oom flag carried into the next run is not a new kill
    assert _kinds(replace(new, state=State.STARTING),
                  replace(new, state=State.RUNNING)) == ["state"]


def test_health_turning_is_an_event_but_a_pid_move_is_not() -> None:
    sick = replace(RUN, health=Health.UNHEALTHY, reason="liveness probe failing: x")
    assert _kinds(RUN, sick) == ["unhealthy"]
    assert _kinds(sick, RUN) == ["healthy"]
    assert _kinds(RUN, replace(RUN, pid=11)) == []
    assert _kinds(replace(RUN, health=Health.UNKNOWN), RUN) == []


def test_the_store_keeps_the_last_events_and_reads_them_without_a_daemon(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "MAX_EVENTS", 5)
    path = str(tmp_path / "state.db")

    async def write() -> None:
        s = store.Store(path)
        for i in range(8):
            s.add_event({"agent": "a" if i % 2 else "b", "n": i})
        assert [e["n"] for e in s.events()] == [3, 4, 5, 6, 7]
        assert [e["n"] for e in s.events(["a"], tail=1)] == [7]
        s.close()

    asyncio.run(write())
    assert [e["id"] for e in store.read_events(path)] == [4, 5, 6, 7, 8]
    assert [e["n"] for e in store.read_events(path, ["b"])] == [4, 6]
    assert store.read_events(str(tmp_path / "none.db")) == []


def test_silence_counts_from_the_last_output_or_the_start() -> None:
    assert health.silence(5, since=100, now=104)[0]
    ok, detail = health.silence(5, since=100, now=107)
    assert not ok and detail == "no output for 7s (silence: 5s)"


def test_a_heartbeat_is_its_files_age_inside_the_workdir(tmp_path: Path) -> None:
    beat = tmp_path / "hb"
    beat.touch()
    os.utime(beat, (1000, 1000))
    assert looks.heartbeat("hb", 60, str(tmp_path), now=1030)[0]
    assert not looks.heartbeat("hb", 60, str(tmp_path), now=1100)[0]
    # an old file counts from the run's start: a new run has `within` for its first beat
    assert looks.heartbeat("hb", 60, str(tmp_path), began=1090, now=1100)[0]
    assert looks.heartbeat("later", 60, str(tmp_path), began=1090, now=1100)[0]
    assert not looks.heartbeat("later", 60, str(tmp_path), began=1000, now=1100)[0]
    (tmp_path / "out").symlink_to("/etc/hostname")
    ok, detail = looks.heartbeat("out", 3600 * 24 * 365 * 50, str(tmp_path))
    assert not ok and "outside" in detail
    os.mkfifo(tmp_path / "fifo")
    assert looks.heartbeat("fifo", 60, str(tmp_path)) == (
        False, "heartbeat fifo is not a regular file")


def test_hooks_run_at_most_four_at_once_and_beyond_the_queue_are_skipped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.manifest.spec import EventHooks, Hook
    from corral.runtime import hooks

    (tmp_path / "active").mkdir()
    script = ("touch active/$$; ls active | wc -l >> counts; cat > /dev/null; sleep 0.3; "
              "rm active/$$")
    on = EventHooks(restart=[Hook(command=["sh", "-c", script])])
    monkeypatch.setattr(hooks, "QUEUED", 10)
    kept: list[dict[str, object]] = []

    async def run() -> None:
        runner = hooks.HookRunner(kept.append, cwd=lambda: str(tmp_path), project=lambda: "p")
        for n in range(12):
            runner.on_event(on, {"agent": "a", "instance": "a.1", "event": "restart",
                                 "time": 1.0, "id": n})
        await runner.wait()

    asyncio.run(run())
    counts = [int(c) for c in (tmp_path / "counts").read_text().split()]
    assert len(counts) == 10 and max(counts) <= hooks.CONCURRENT
    results = sorted(str(e["result"]) for e in kept)
    assert results == ["ok"] * 10 + ["skipped"] * 2
