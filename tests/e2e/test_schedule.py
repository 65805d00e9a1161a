"""Scheduled agents through the real CLI and daemon: runs at their times, overlap, catch-up
after the fleet was down, ``ps`` (last and next run, ``--all``), ``logs --run N``."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Project


def runs(project: Project, *agents: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(
        project.corral("ps", "--all", "--json", *agents).stdout)
    return found


def wait_runs(project: Project, agent: str, predicate: Any, what: str,
              timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = runs(project, agent)
        if predicate(found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; runs: {json.dumps(found, indent=1)}\n"
                         f"{project.daemon_log()}")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_an_every_agent_runs_at_its_times_and_ps_and_logs_show_its_runs(
        project: Project) -> None:
    project.write("""
        name: ticks
        agents:
          tick:
            command: ["sh", "-c", "echo x >> ticks.txt; echo tick $(wc -l < ticks.txt)"]
            schedule: {every: 1s}
    """)
    up = project.corral("up", "-d")
    assert "tick.1: stopped (scheduled: waits for its time)" in up.stdout
    done = wait_runs(project, "tick",
                     lambda rs: sum(r["status"] == "succeeded" for r in rs) >= 3,
                     "three runs")
    assert len(lines(project.root / "ticks.txt")) >= 3
    ended = [r for r in done if r["status"] == "succeeded"]
    assert [r["run"] for r in ended[:3]] == [1, 2, 3]
    assert all(r["trigger"] == "schedule" and r["exit_code"] == 0 for r in ended)
    assert all(r["started_at"] <= r["ended_at"] for r in ended)

    row = project.ps()["tick.1"]
    assert row["schedule"]["next_run"] is not None
    assert row["schedule"]["last_run"]["run"] >= 3
    table = project.corral("ps").stdout
    assert "LAST RUN" in table.splitlines()[0] and "NEXT RUN" in table.splitlines()[0]
    assert " in " in table.splitlines()[1]
    history = project.corral("ps", "--all").stdout.splitlines()
    assert history[0].split() == ["NAME", "RUN", "TRIGGER", "STARTED", "ENDED", "EXIT",
                                  "STATUS"]
    assert history[1].split()[:3] == ["tick.1", "1", "schedule"]

    second = [json.loads(line) for line in
              project.corral("logs", "tick", "--run", "2", "--json").stdout.splitlines()]
    assert [(r["run"], r["message"]) for r in second] == [(2, "tick 2")]
    assert project.corral("logs", "tick", "--run", "2").stdout.split("|")[-1].strip() \
        == "tick 2"
    bad = project.corral("logs", "tick", "--run", "two", check=False)
    assert bad.returncode == 2 and "is not a run number" in bad.stderr


def test_overlap_skip_never_starts_a_run_while_the_last_goes(project: Project) -> None:
    project.write("""
        name: skips
        agents:
          slow:
            command: ["sh", "-c", "echo start >> marks.txt; sleep 2.5; echo end >> marks.txt"]
            schedule: {every: 1s, overlap: skip}
    """)
    project.corral("up", "-d")
    found = wait_runs(project, "slow",
                      lambda rs: sum(r["status"] == "succeeded" for r in rs) >= 2,
                      "two long runs")
    skipped = [r for r in found if r["status"] == "skipped"]
    assert skipped, found
    first, second = (r for r in found if r["status"] == "succeeded")
    # the times that came while run 1 went were skipped, not run
    assert any(first["started_at"] < r["started_at"] <= first["ended_at"] for r in skipped)
    assert second["started_at"] >= first["ended_at"]
    project.corral("stop", "slow")
    marks = lines(project.root / "marks.txt")
    assert marks[:4] == ["start", "end", "start", "end"]
    assert all(a != b for a, b in itertools.pairwise(marks))  # never two at once


def test_overlap_queue_runs_one_after_the_current_ends(project: Project) -> None:
    project.write("""
        name: queues
        agents:
          slow:
            command: ["sh", "-c", "echo start >> marks.txt; sleep 2.5; echo end >> marks.txt"]
            schedule: {every: 1s, overlap: queue}
    """)
    project.corral("up", "-d")
    found = wait_runs(project, "slow", lambda rs: any(r["trigger"] == "queued" and
                                                      r["status"] == "succeeded" for r in rs),
                      "a queued run")
    first = found[0]
    queued = next(r for r in found if r["trigger"] == "queued")
    assert queued["started_at"] >= first["ended_at"]
    # one waits; the other times that came meanwhile were skipped
    assert any(r["status"] == "skipped" for r in found)
    project.corral("stop", "slow")
    marks = lines(project.root / "marks.txt")
    assert all(a != b for a, b in itertools.pairwise(marks))


def test_overlap_replace_stops_the_running_one(project: Project) -> None:
    project.write("""
        name: replaces
        agents:
          long:
            command: ["sleep", "30"]
            schedule: {every: 1s, overlap: replace}
    """)
    project.corral("up", "-d")
    found = wait_runs(project, "long",
                      lambda rs: sum(r["status"] == "replaced" for r in rs) >= 2,
                      "two replaced runs")
    replaced = [r for r in found if r["status"] == "replaced"]
    assert [r["run"] for r in replaced[:2]] == [1, 2]
    assert all(r["ended_at"] is not None for r in replaced)
    project.corral("stop", "long")
    assert runs(project, "long")[-1]["status"] == "stopped"


@pytest.mark.parametrize("away", ["down", "daemon killed"])
def test_a_time_missed_while_the_fleet_was_down_is_caught_up_once(project: Project,
                                                                 away: str) -> None:
    project.write("""
        name: catchup
        agents:
          caught:
            command: ["sh", "-c", "echo ran"]
            schedule: {every: 3s, catch_up: true}
          plain:
            command: ["sh", "-c", "echo ran"]
            schedule: {every: 3s}
    """)
    project.corral("up", "-d")
    for agent in ("caught", "plain"):
        wait_runs(project, agent, lambda rs: any(r["status"] == "succeeded" for r in rs),
                  f"a first run of {agent}")
    if away == "down":
        project.corral("down")
    else:  # the fleet stays up, its schedule with no one to follow it
        daemon = project.daemon_pid()
        assert daemon is not None
        os.kill(daemon, signal.SIGKILL)
    down_at = time.time()
    time.sleep(5)  # the daemon is gone for more than one period: a time is missed
    project.corral("up", "-d")
    caught = wait_runs(project, "caught",
                       lambda rs: any(r["trigger"] == "catch-up" and r["status"] != "running"
                                      for r in rs), "the catch-up run")
    after = [r for r in caught if r["started_at"] > down_at]
    assert [r["trigger"] for r in after][:1] == ["catch-up"]
    assert sum(r["trigger"] == "catch-up" for r in caught) == 1
    # nothing ran while the fleet was down
    assert not [r for r in caught if down_at < r["started_at"] < down_at + 5]
    plain = runs(project, "plain")
    assert not any(r["trigger"] == "catch-up" for r in plain)


def test_a_cron_agent_shows_its_next_time_and_start_runs_it_now(project: Project) -> None:
    project.write("""
        name: crons
        agents:
          nightly:
            command: ["sh", "-c", "echo nightly"]
            schedule: {cron: "30 3 * * *", timezone: Europe/Berlin}
          boot:
            command: ["sh", "-c", "echo at up"]
            schedule: {cron: "30 3 * * *", run_on_start: true}
    """)
    project.corral("up", "-d")
    booted = wait_runs(project, "boot", lambda rs: rs and rs[-1]["status"] == "succeeded",
                       "the run at up")
    assert [(r["run"], r["trigger"]) for r in booted] == [(1, "start")]
    row = project.ps()["nightly.1"]
    next_run = row["schedule"]["next_run"]
    assert next_run is not None and 0 < next_run - time.time() <= 86400 + 3600
    from datetime import datetime
    from zoneinfo import ZoneInfo

    at = datetime.fromtimestamp(next_run, ZoneInfo("Europe/Berlin"))
    assert (at.hour, at.minute, at.second) == (3, 30, 0)
    project.corral("start", "nightly")
    found = wait_runs(project, "nightly", lambda rs: rs and rs[-1]["status"] == "succeeded",
                      "the run asked for")
    assert [(r["run"], r["trigger"]) for r in found] == [(1, "manual")]
    project.corral("stop", "nightly")
    assert project.ps()["nightly.1"]["schedule"]["active"] is False
    line = next(x for x in project.corral("ps").stdout.splitlines() if x.startswith("nightly"))
    assert "paused" in line.split()


def test_a_bad_schedule_is_one_line_naming_its_path(project: Project) -> None:
    cases = {
        'cron: "61 * * * *"': "agents.job.schedule.cron: '61 * * * *' is not a cron "
                              "expression (bad minute)",
        'cron: "* * * * *", timezone: Mars/Olympus':
            "agents.job.schedule.timezone: unknown time zone 'Mars/Olympus'",
        'every: 1m, cron: "* * * * *"': "agents.job.schedule: give exactly one of cron",
    }
    for schedule, problem in cases.items():
        project.write(f"""
            name: bad
            agents:
              job:
                command: ["true"]
                schedule: {{{schedule}}}
        """)
        proc = project.corral("up", "-d", check=False)
        assert proc.returncode == 2, proc.stderr
        assert problem in proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_a_run_going_when_the_daemon_is_killed_is_adopted_and_kept(project: Project) -> None:
    project.write("""
        name: adopt
        agents:
          slow:
            command: ["sh", "-c", "echo start; sleep 6; echo end"]
            schedule: {every: 1s}
    """)
    project.corral("up", "-d")
    wait_runs(project, "slow", lambda rs: rs and rs[0]["status"] == "running", "run 1")
    daemon = project.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    project.corral("up", "-d")  # a new daemon re-adopts the run and follows the schedule
    found = wait_runs(project, "slow",
                      lambda rs: any(r["run"] > 1 and r["status"] == "succeeded" for r in rs),
                      "a run after the adopted one")
    # not the new daemon's child: it saw the run end, not its exit code
    assert (found[0]["run"], found[0]["status"], found[0]["exit_code"]) == (1, "ended", None)
    first = [json.loads(line)["message"] for line in
             project.corral("logs", "slow", "--run", "1", "--json").stdout.splitlines()]
    assert first == ["start", "end"]  # the adopted run's lines keep its number
    assert next(r["trigger"] for r in found if r["run"] > 1 and r["status"] == "succeeded") \
        == "schedule"
