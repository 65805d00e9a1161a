"""The probe wiring of one instance: its log watches and probe loops, and what their failures
ask of the runner.

A probe's failure is a ``Verdict`` (what to do, which probe, why) put in the runner's mailbox;
the runner acts on it while it supervises the run. Health itself is set here, as each probe
reports, through the runner's ``set`` (readiness when declared, else liveness).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from corral.drivers.base import Driver, Task
from corral.manifest.spec import Probe, ProbeAction
from corral.runtime.health import Clock, Inside, LogWatch, ProbeLoop, Remote
from corral.runtime.mailbox import Mailbox
from corral.runtime.state import ACTIVE, Health, State

LineListeners = Callable[[Callable[[str, bytes], None]], Callable[[], None]]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A failed probe's request: ``action`` (its ``action:``, liveness restarts by default),
    the probe's ``role`` (readiness, liveness) and the failure's ``detail``."""

    action: ProbeAction
    role: str
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.role} probe failed: {self.detail}"


_CANCELS = 5


class Probes:
    """Starts an instance's probes for one run and ends them with it."""

    __slots__ = ("cleanup", "tasks")

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []
        self.cleanup: list[Callable[[], None]] = []

    async def close(self) -> None:
        """Cancelled and waited for: a probe cancelled while spawning its exec reaps it in
        its own cleanup, which a second cancel (the daemon's shutdown) would cut short. A
        probe still running a second after its cancel is cancelled again, a few times at
        most: the run's end never waits on a probe for long."""
        for c in self.cleanup:
            c()
        pending = set(self.tasks)
        for _ in range(_CANCELS):
            if not pending:
                return
            for t in pending:
                t.cancel()
            _, pending = await asyncio.wait(pending, timeout=1.0)


def start(task: Task, driver: Driver, verdicts: Mailbox[Verdict], *, clock: Clock,
          set_state: Callable[..., None], current: Callable[[], State],
          add_line_listener: LineListeners | None,
          last_output: Callable[[], float] | None = None) -> Probes:
    """The probes of ``task``'s run: its ready line watch, readiness and liveness loops.
    ``last_output``: when the instance last printed (for silence probes)."""
    spec = task.spec
    probes = Probes()

    if spec.ready_log_line and add_line_listener is not None:
        watch = LogWatch(spec.ready_log_line)

        def on_lines(stream: str, data: bytes, w: LogWatch = watch) -> None:
            if not w.seen.is_set():
                w.lines(stream, data)
                if w.seen.is_set():
                    set_state(log_ready=True)

        probes.cleanup.append(add_line_listener(on_lines))
    for role, probe in (("readiness", spec.readiness), ("liveness", spec.liveness)):
        if probe is None:
            continue
        log_watch = None
        if probe.log_line is not None and add_line_listener is not None:
            log_watch = LogWatch(probe.log_line.pattern)
            probes.cleanup.append(add_line_listener(log_watch.lines))
        action = probe.action or ("restart" if role == "liveness" else "none")
        report = _reporter(task, role, action, verdicts, set_state, current)
        loop = ProbeLoop(probe, report, env=task.env, workdir=task.workdir,
                         log_watch=log_watch, clock=clock, inside=_inside(task, driver),
                         last_output=last_output, remote=_remote(task, driver))
        probes.tasks.append(asyncio.create_task(loop.run(), name=f"{role}:{task.instance}"))
    return probes


def _inside(task: Task, driver: Driver) -> Inside | None:
    """Exec probes run where the agent runs: a driver that can run a command inside its
    instance (a container's ``engine exec``) says how; others run them on the host."""
    if not driver.capabilities.exec_inside:
        return None

    async def argv(command: list[str]) -> tuple[list[str], dict[str, str] | None]:
        return await driver.exec(task, command), driver.exec_env(task)

    return argv


def _remote(task: Task, driver: Driver) -> Remote | None:
    """Where the instance runs elsewhere (a cluster's node: ``probes_remote``), its driver
    runs the checks there."""
    if not driver.capabilities.probes_remote:
        return None

    async def remote(probe: Probe, began: float) -> tuple[bool, str]:
        return await driver.check_remote(task, probe, began)

    return remote


def _reporter(task: Task, role: str, action: ProbeAction, verdicts: Mailbox[Verdict],
              set_state: Callable[..., None], current: Callable[[], State]
              ) -> Callable[[bool, str], None]:
    spec = task.spec

    def report(ok: bool, detail: str) -> None:
        # health shows readiness when declared, else liveness
        if role == "readiness" or spec.readiness is None:
            set_state(health=Health.HEALTHY if ok else Health.UNHEALTHY,
                      reason="" if ok else f"{role} probe failing: {detail}")
        if not ok and action != "none" and current() in ACTIVE:
            verdicts.put(Verdict(action, role, detail))

    return report
