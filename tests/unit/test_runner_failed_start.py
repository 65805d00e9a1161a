"""A start the host cannot make (EMFILE, EAGAIN) is a failed start for the restart policy, and
an error no step expected leaves a runner that ``start`` brings back: never a wedged one."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path
from typing import Any

from corral.drivers.base import Handle, Output, Task
from corral.manifest.loader import load_text
from corral.runtime.events import EventBus
from corral.runtime.store import Store
from corral.runtime.supervisor import Supervisor
from tests.unit.test_runner_fake import FakeClock, states

FLEET = """
name: fake
agents:
  worker:
    isolation: fake
    command: fake
    fake: {steps: [{print: [up]}]}
    restart:
      policy: always
      backoff: {initial: 1s, factor: 2, max: 5s}
  once:
    isolation: fake
    command: fake
    fake: {steps: [{print: [up]}]}
    restart: {policy: "no"}
"""


def _failing(sup: Supervisor, only: str, failures: list[BaseException]) -> list[str]:
    """The fake driver's ``start`` of ``only`` raising ``failures`` in turn, then starting
    for real."""
    driver = sup.driver("fake")
    real = driver.start
    calls: list[str] = []

    async def start(task: Task, output: Output) -> Handle:
        calls.append(task.instance)
        if failures and task.instance == only:
            raise failures.pop(0)
        return await real(task, output)

    driver.start = start  # type: ignore[method-assign]
    return calls


async def _until(sup: Supervisor, name: str, pred: Any) -> dict[str, Any]:
    for _ in range(20_000):
        row = states(sup)[name]
        if pred(row):
            return row
        await asyncio.sleep(0)
    raise AssertionError(f"{name} never reached the condition: {states(sup)[name]}")


def _run(tmp_path: Path, body: Any) -> None:
    clock = FakeClock()

    async def go() -> None:
        manifest = load_text(FLEET, project_dir=str(tmp_path))
        sup = Supervisor(str(tmp_path / ".corral"), store=Store(str(tmp_path / "s.db")),
                         events=EventBus(), clock=clock, base_env={})
        (tmp_path / ".corral").mkdir(exist_ok=True)
        try:
            await body(sup, manifest, clock)
        finally:
            await sup.down()
            await sup.close()

    asyncio.run(asyncio.wait_for(go(), 30))


def test_a_start_out_of_descriptors_is_retried_with_backoff_and_recovers(tmp_path: Path) -> None:
    async def body(sup: Supervisor, manifest: Any, clock: FakeClock) -> None:
        emfile = [OSError(errno.EMFILE, "Too many open files") for _ in range(3)]
        calls = _failing(sup, "worker.1", emfile)
        seen: list[str] = []
        sup.events.subscribe()
        await sup.apply(manifest)
        row = await _until(sup, "worker.1", lambda r: (seen.append(r["reason"]) or
                                                       r["state"] == "running"))
        assert calls.count("worker.1") == 4  # three failed starts, then the one that ran
        assert row["restarts"] == 3
        assert clock.sleeps[:3] == [1.0, 2.0, 4.0]  # the policy's backoff, not a hot loop
        assert any("start failed: Too many open files; restarting in" in r for r in seen)

    _run(tmp_path, body)


def test_a_failed_start_under_policy_no_is_fatal_and_start_works_again(tmp_path: Path) -> None:
    async def body(sup: Supervisor, manifest: Any, clock: FakeClock) -> None:
        _failing(sup, "once.1", [OSError(errno.EAGAIN, "Resource temporarily unavailable")])
        await sup.apply(manifest)
        row = await _until(sup, "once.1", lambda r: r["state"] == "fatal")
        assert "start failed: Resource temporarily unavailable" in row["reason"]
        sup.restart(["once.1"])
        await _until(sup, "once.1", lambda r: r["state"] == "running")

    _run(tmp_path, body)


def test_an_unexpected_error_leaves_a_runner_that_restart_brings_back(tmp_path: Path) -> None:
    async def body(sup: Supervisor, manifest: Any, clock: FakeClock) -> None:
        _failing(sup, "worker.1", [RuntimeError("a bug"), RuntimeError("a bug")])
        await sup.apply(manifest)
        row = await _until(sup, "worker.1", lambda r: r["state"] == "fatal")
        assert "internal error: RuntimeError('a bug')" in row["reason"]
        sup.restart(["worker.1"])  # fails again: still listening afterwards
        await _until(sup, "worker.1", lambda r: r["state"] == "fatal" and sup.runners[
            "worker.1"]._task is not None and not sup.runners["worker.1"]._task.done())
        for _ in range(100):
            await asyncio.sleep(0)
        sup.start(["worker.1"])
        await _until(sup, "worker.1", lambda r: r["state"] == "running")
        assert not sup.runners["worker.1"]._task.done()  # type: ignore[union-attr]

    _run(tmp_path, body)
