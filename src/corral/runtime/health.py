"""Health probes with Kubernetes semantics: exec, http, tcp and log_line checks, and two for
agents alive but stuck: silence (no output for a while) and heartbeat (a file's age).

A ``ProbeLoop`` waits ``initial_delay``, then checks every ``period`` with a ``timeout``;
``success_threshold`` passes in a row make it healthy, ``failure_threshold`` failures in a row
unhealthy. It only reports verdicts; the runner decides what a failure means.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from corral.drivers.host import looks
from corral.errors import CorralError
from corral.manifest.spec import Probe

Verdict = Callable[[bool, str], None]


class Clock(Protocol):
    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def time(self) -> float:
        import time

        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class LogWatch:
    """Remembers whether a pattern has appeared in an instance's output since it started."""

    def __init__(self, pattern: str) -> None:
        self._re = re.compile(pattern.encode())
        self.seen = asyncio.Event()

    def lines(self, stream: str, data: bytes) -> None:
        if not self.seen.is_set() and self._re.search(data):
            self.seen.set()


async def taken_ports(probes: list[Probe | None]) -> list[tuple[str, int, str]]:
    """Probe targets some other process already listens on: checking them would test that
    process, not the agent. Returns (host, port, kind) for each."""
    taken = []
    for probe in probes:
        if probe is None:
            continue
        target = probe.tcp or probe.http
        if target is None:
            continue
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port), 0.5)
        except (OSError, TimeoutError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        taken.append((target.host, target.port, probe.kind))
    return taken


# Where an exec probe runs: the host argv that runs the probe's command inside the agent's
# isolation (a container's ``engine exec``, a sandbox's ``nsenter``) and the environment it
# runs with (None: the supervisor's); no Inside runs it on the host, in the agent's env.
Inside = Callable[[list[str]], Awaitable[tuple[list[str], Mapping[str, str] | None]]]


# A check run where the instance runs, by its driver (``probes_remote``: an instance on a
# cluster's node): (probe, when the run began) -> (passed, detail).
Remote = Callable[[Probe, float], Awaitable[tuple[bool, str]]]
REMOTE_KINDS = ("tcp", "http", "exec", "heartbeat")  # silence and log_line: the log's here
REMOTE_SLACK = 2.0  # seconds a remote check may take past the probe's timeout: the way there

# When the instance last printed (unix seconds; 0: not yet): what a silence probe checks.
LastOutput = Callable[[], float]


async def check(probe: Probe, *, env: Mapping[str, str], workdir: str,
                log_watch: LogWatch | None, inside: Inside | None = None,
                last_output: LastOutput | None = None, began: float = 0.0,
                remote: Remote | None = None) -> tuple[bool, str]:
    """One check, bounded by the probe's timeout. Returns (passed, detail). ``began``: when
    the probe's run began (a silence or heartbeat is counted from then at the earliest).
    ``remote``: where the instance runs elsewhere, its tcp, http, exec and heartbeat checks
    run there."""
    if remote is not None and probe.kind in REMOTE_KINDS:
        try:
            found = await asyncio.wait_for(remote(probe, began), probe.timeout + REMOTE_SLACK)
        except TimeoutError:
            return False, f"{probe.kind} check timed out after {probe.timeout:g}s (no answer " \
                          "from where the instance runs)"
        except CorralError as exc:  # its node out of reach, say: a failed check
            return False, exc.problem
        return _not_cancelled(found)
    if probe.silence is not None:
        last = last_output() if last_output is not None else 0.0
        return silence(probe.silence, max(began, last))
    if probe.heartbeat is not None:
        return looks.heartbeat(probe.heartbeat, probe.heartbeat_within, workdir, began)
    try:
        found = await asyncio.wait_for(_check(probe, env, workdir, log_watch, inside),
                                       probe.timeout)
    except TimeoutError:
        return False, f"{probe.kind} check timed out after {probe.timeout:g}s"
    return _not_cancelled(found)


def _not_cancelled(found: tuple[bool, str]) -> tuple[bool, str]:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        # Python 3.11's wait_for returns the result of a check that ended as the probe was
        # cancelled, swallowing the cancel (gh-86296): the cancel stands all the same
        raise asyncio.CancelledError
    return found


async def _check(probe: Probe, env: Mapping[str, str], workdir: str,
                 log_watch: LogWatch | None, inside: Inside | None) -> tuple[bool, str]:
    if probe.tcp is not None:
        return await looks.tcp(probe.tcp.host, probe.tcp.port)
    if probe.http is not None:
        h = probe.http
        return await looks.http(h.host, h.port, h.path, h.scheme, h.status, probe.timeout)
    if probe.exec is not None:
        if inside is not None:
            try:
                argv, inside_env = await inside(probe.exec.command)
            except CorralError as exc:  # e.g. the sandbox is not up yet: a failed check
                return False, exc.problem
            return await looks.command(argv, os.environ if inside_env is None else inside_env,
                                       "/", shown=probe.exec.command[0])
        return await looks.command(probe.exec.command, env, workdir)
    if probe.log_line is not None:
        if log_watch is not None and log_watch.seen.is_set():
            return True, f"log line /{probe.log_line.pattern}/ seen"
        return False, f"log line /{probe.log_line.pattern}/ not seen yet"
    raise AssertionError("probe kind")


def silence(limit: float, since: float, now: float | None = None) -> tuple[bool, str]:
    """Whether output came within ``limit`` seconds (``since``: its last, or the run's start)."""
    import time

    quiet = (time.time() if now is None else now) - since
    if quiet > limit:
        return False, f"no output for {quiet:.0f}s (silence: {limit:g}s)"
    return True, f"output {quiet:.0f}s ago"


class ProbeLoop:
    def __init__(self, probe: Probe, verdict: Verdict, *, env: Mapping[str, str], workdir: str,
                 log_watch: LogWatch | None, clock: Clock, inside: Inside | None = None,
                 last_output: LastOutput | None = None, remote: Remote | None = None) -> None:
        self.probe = probe
        self._last_output = last_output
        self._inside = inside
        self._remote = remote
        self._verdict = verdict
        self._env = env
        self._workdir = workdir
        self._log_watch = log_watch
        self._clock = clock
        self.healthy: bool | None = None
        self.detail = ""

    async def run(self) -> None:
        p = self.probe
        began = self._clock.time()
        await self._clock.sleep(p.initial_delay)
        passes = fails = 0
        while True:
            ok, detail = await check(p, env=self._env, workdir=self._workdir,
                                     log_watch=self._log_watch, inside=self._inside,
                                     last_output=self._last_output, began=began,
                                     remote=self._remote)
            self.detail = detail
            passes, fails = (passes + 1, 0) if ok else (0, fails + 1)
            if ok and passes >= p.success_threshold and self.healthy is not True:
                self.healthy = True
                self._verdict(True, detail)
            elif not ok and fails >= p.failure_threshold and self.healthy is not False:
                self.healthy = False
                self._verdict(False, detail)
            if self._log_watch is not None and not ok and p.log_line is not None:
                # a log_line probe need not wait a whole period once the line shows up
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._log_watch.seen.wait(), p.period)
                continue
            await self._clock.sleep(p.period)
