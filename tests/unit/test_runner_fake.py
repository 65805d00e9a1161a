"""The supervisor and runners over the fake driver, with an injected clock: exact and instant."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from corral.manifest.loader import load_text
from corral.runtime.events import EventBus
from corral.runtime.store import Store
from corral.runtime.supervisor import Supervisor


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


MANIFEST = """
name: fake
agents:
  crasher:
    isolation: fake
    command: fake
    fake: {steps: [{print: [boom]}, {exit: 1}]}
    restart:
      policy: on-failure
      max_restarts: 4
      window: 1h
      backoff: {initial: 1s, factor: 2, max: 5s, reset_after: 30s}
  job:
    class: compute
    isolation: fake
    command: fake
    fake: {steps: [{print: [done]}, {exit: 0}]}
  after:
    isolation: fake
    command: fake
    depends_on: {job: {condition: completed_successfully}}
    fake: {steps: [{print: [up]}]}
"""


def run_fleet(tmp_path: Path, text: str, until: Any, events: EventBus | None = None,
              *, down: bool = True) -> tuple[Supervisor, FakeClock]:
    """``down``: end with ``corral down``; else as a daemon that stops (or crashes) and
    leaves its fleet to be re-adopted."""
    clock = FakeClock()

    async def go() -> Supervisor:
        manifest = load_text(text, project_dir=str(tmp_path))
        sup = Supervisor(str(tmp_path / ".corral"), store=Store(str(tmp_path / "s.db")),
                         events=events or EventBus(), clock=clock, base_env={})
        (tmp_path / ".corral").mkdir(exist_ok=True)
        await sup.apply(manifest)
        for _ in range(10_000):
            if until(sup):
                break
            await asyncio.sleep(0)
        if down:
            await sup.down()
        await sup.close()
        return sup

    return asyncio.run(asyncio.wait_for(go(), 30)), clock


def states(sup: Supervisor) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in sup.status()}


def test_backoff_delays_are_exact_and_the_crash_loop_ends_fatal(tmp_path: Path) -> None:
    sup, clock = run_fleet(tmp_path, MANIFEST,
                           lambda s: states(s)["crasher.1"]["state"] == "fatal")
    row = states(sup)["crasher.1"]
    assert row["state"] == "fatal"
    assert row["restarts"] == 4
    assert "crash loop: 4 restarts within 3600s" in row["reason"]
    assert clock.sleeps[:4] == [1.0, 2.0, 4.0, 5.0]


def test_dependency_condition_completed_successfully(tmp_path: Path) -> None:
    sup, _ = run_fleet(tmp_path, MANIFEST, lambda s: states(s)["after.1"]["state"] == "running")
    rows = states(sup)
    assert rows["job.1"]["state"] == "exited" and rows["job.1"]["exit_code"] == 0
    assert rows["after.1"]["state"] == "stopped"  # stopped by the final down
    driver = sup.driver("fake")
    started = driver.started  # type: ignore[attr-defined]
    assert started.index("job.1") < started.index("after.1")


def test_state_is_persisted_for_a_restarted_daemon(tmp_path: Path) -> None:
    run_fleet(tmp_path, MANIFEST, lambda s: states(s)["job.1"]["state"] == "exited",
              down=False)
    stored = Store(str(tmp_path / "s.db"))
    rows = stored.instances()
    assert rows["job.1"].exit_code == 0
    assert stored.get_meta("manifest")["name"] == "fake"
    stored.close()


def test_down_ends_the_generation_in_the_store(tmp_path: Path) -> None:
    """After ``down`` nothing of the fleet is kept: no result, restart count or manifest
    for the next daemon to rest on."""
    run_fleet(tmp_path, MANIFEST, lambda s: states(s)["job.1"]["state"] == "exited")
    stored = Store(str(tmp_path / "s.db"))
    assert stored.instances() == {}
    assert stored.get_meta("manifest") is None
    stored.close()


def _probed(action: str) -> str:
    return f"""
name: probed
agents:
  sick:
    isolation: fake
    command: fake
    fake: {{steps: [{{print: [up]}}]}}
    restart: {{policy: on-failure, backoff: {{initial: 1s}}}}
    liveness: {{exec: "false", period: 1s, failure_threshold: 1, action: {action}}}
"""


def _watched(tmp_path: Path, action: str, done: Any) -> tuple[Supervisor, list[tuple[str, str]]]:
    """The fleet run until ``done``, with every (state, reason) the instance went through."""
    events = EventBus()
    sub = events.subscribe()
    sup, _ = run_fleet(tmp_path, _probed(action), lambda s: done(states(s)["sick.1"]), events)
    seen = []
    while not sub.queue.empty():
        event = sub.queue.get_nowait()
        if event["name"] == "sick.1":
            seen.append((event["state"], event["reason"]))
    return sup, seen


def test_a_liveness_verdict_of_restart_restarts_at_once_naming_the_probe(tmp_path: Path) -> None:
    _, seen = _watched(tmp_path, "restart", lambda r: r["restarts"] >= 1)
    assert ("stopping", "liveness probe failed: exec false: exit 1") in seen, seen
    assert ("backoff", "liveness probe failed: exec false: exit 1; restarting") in seen, seen


def test_a_liveness_verdict_of_stop_leaves_the_instance_stopped(tmp_path: Path) -> None:
    sup, seen = _watched(tmp_path, "stop", lambda r: r["state"] == "stopped")
    assert ("stopping", "liveness probe failed: exec false: exit 1") in seen, seen
    row = states(sup)["sick.1"]
    assert row["state"] == "stopped" and row["restarts"] == 0
    assert seen[-1] == ("stopped", "stopped on request")


def test_a_liveness_verdict_of_kill_sends_sigkill_and_the_policy_decides(tmp_path: Path) -> None:
    sup, seen = _watched(tmp_path, "kill", lambda r: r["restarts"] >= 1)
    assert ("stopping", "liveness probe failed: exec false: exit 1") in seen, seen
    assert states(sup)["sick.1"]["exit_signal"] == 9
    assert ("backoff", "killed by SIGKILL; restarting in 1s (policy on-failure)") in seen, seen
