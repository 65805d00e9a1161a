"""What ``corral top`` shows of each instance (``cli.top.fleet``): the usage read back from
the daemon's own ``/metrics`` exposition, the CPU share between two samples, the rows kept in
step with the daemon's status and events, and the name filter."""

from __future__ import annotations

import time

from corral.cli.top.fleet import COLUMNS, Fleet, size, usage_samples
from corral.metrics import Metrics
from corral.runtime.state import Health, State
from corral.runtime.views import Snapshot, public


def _row(agent: str, index: int, state: State = State.RUNNING, **fields: object) -> dict:
    started = time.time() - 75 if state is State.RUNNING else None
    snap = Snapshot(name=f"{agent}.{index}", agent=agent, index=index, state=state,
                    health=Health.NONE, pid=4000 + index if started else None,
                    started_at=started, **fields)  # type: ignore[arg-type]
    return public(snap)


def test_usage_is_read_back_from_the_daemons_exposition() -> None:
    rows = [_row("web", 1), _row("web", 2), _row("job", 1, State.EXITED, exit_code=0)]
    usage = {"web.1": (12.5, 40 << 20), "web.2": (0.25, 3 << 20)}
    text = Metrics().render(rows, usage).decode()
    # the exited instance has no usage, and the many other samples are skipped
    assert usage_samples(text) == usage


def test_cpu_share_is_the_cpu_time_used_between_two_samples() -> None:
    fleet = Fleet()
    fleet.replace([_row("web", 1), _row("web", 2)])
    fleet.sample({"web.1": (10.0, 1 << 20), "web.2": (3.0, 2 << 20)}, at=100.0)
    assert fleet.cpu_share == {}  # one sample is no rate
    fleet.sample({"web.1": (11.0, 1 << 20), "web.2": (3.5, 2 << 20)}, at=102.0)
    assert fleet.cpu_share == {"web.1": 50.0, "web.2": 25.0}
    # web.2 stopped: no sample, so no share or memory shown for it
    fleet.sample({"web.1": (13.0, 5 << 20)}, at=104.0)
    assert fleet.cpu_share == {"web.1": 100.0}
    assert fleet.rss == {"web.1": 5 << 20}
    cells = dict(zip((key for key, _ in COLUMNS), fleet.cells("web.1"), strict=True))
    assert cells["cpu"] == "100.0%" and cells["mem"] == "5.0M"
    assert cells["state"] == "running" and cells["pid"] == "4001"
    assert cells["uptime"] == "1m15s"


def test_rows_follow_the_status_and_the_state_events() -> None:
    fleet = Fleet()
    fleet.replace([_row("web", 1), _row("web", 2), _row("db", 1)])
    fleet.sample({"web.2": (1.0, 1024)}, at=1.0)
    # an event changes the fields it carries and keeps the others (the status' ports)
    fleet.rows["web.1"]["ports"] = ["8080"]
    fleet.update(_row("web", 1, State.STOPPED, reason="stopped on request"))
    assert fleet.rows["web.1"]["state"] == "stopped"
    assert fleet.rows["web.1"]["ports"] == ["8080"]
    fleet.update(_row("web", 3))  # scaled up: a new instance's first event
    assert fleet.agent_count("web") == 3
    fleet.replace([_row("web", 1), _row("db", 1)])  # scaled down: web.2 and web.3 go
    assert fleet.shown() == ["db.1", "web.1"]
    assert fleet.rss == {}


def test_a_status_older_than_an_event_keeps_what_the_event_said() -> None:
    fleet = Fleet()
    fleet.replace([_row("web", 1), _row("web", 2)])
    asked_at = fleet.events  # a poll asks for the status; before its reply come two events
    fleet.update(_row("web", 1, State.STOPPED, reason="stopped on request"))
    fleet.update(_row("web", 3))
    fleet.replace([_row("web", 1), _row("web", 2)], asked_at)  # the reply, from before them
    assert fleet.rows["web.1"]["state"] == "stopped"
    assert fleet.shown() == ["web.1", "web.2", "web.3"]
    fleet.replace([_row("web", 1), _row("web", 3)], fleet.events)  # a newer one rules
    assert fleet.rows["web.1"]["state"] == "running"
    assert fleet.shown() == ["web.1", "web.3"]


def test_the_filter_keeps_names_holding_the_text() -> None:
    fleet = Fleet()
    fleet.replace([_row("worker", 2), _row("worker", 1), _row("web", 1), _row("db", 1)])
    assert fleet.shown() == ["db.1", "web.1", "worker.1", "worker.2"]
    assert fleet.shown("w") == ["web.1", "worker.1", "worker.2"]
    assert fleet.shown("KER.2") == ["worker.2"]
    assert fleet.shown("nothing") == []


def test_sizes_read_as_ps_shows_them() -> None:
    assert [size(n) for n in (None, 812, 4300, 37 << 20, 3 << 30)] == [
        "-", "812B", "4.2K", "37.0M", "3.0G"]
