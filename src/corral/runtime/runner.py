"""One runner per agent instance: the only owner of that instance's state.

The lifecycle loop reads top to bottom: wait for dependencies, prepare, start, supervise (exit,
stop requests, probe verdicts), ask the restart policy, repeat. Everything else (API, probes,
reconciles) sends the runner requests and reads its frozen ``Snapshot``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Literal

from corral.drivers.base import Driver, ExitResult, Handle, InstanceOutput, Task
from corral.errors import CorralError
from corral.runtime import probes, restart
from corral.runtime.health import Clock, taken_ports
from corral.runtime.mailbox import Flag, Mailbox, any_done
from corral.runtime.probes import LineListeners, Verdict
from corral.runtime.state import SETTLED, Health, State, check_transition
from corral.runtime.views import Snapshot as Snapshot
from corral.secrets import SecretError


class Hooks:
    """What a runner needs from its supervisor, injected (habit 7)."""

    def __init__(
        self,
        *,
        changed: Callable[[Snapshot, Snapshot], None],
        wait_dependencies: Callable[[str], Awaitable[str | None]],
        clock: Clock,
        secrets: Callable[[Task], Awaitable[Task]] | None = None,
        ended: Callable[[Task], Awaitable[None]] | None = None,
    ) -> None:
        self.changed = changed
        self.wait_dependencies = wait_dependencies
        self.clock = clock
        # the task as it starts: with its secrets in env and files; raises SecretError
        self.secrets = secrets
        # after a run ended, before its end is shown: its artifacts go up first, so a
        # dependent waiting for it to complete finds them (never raises)
        self.ended = ended


Request = Literal["start", "stop", "restart"]


class Runner:
    # one per instance: slots keep hundreds of idle ones small (benchmark S2)
    __slots__ = ("_add_line_listener", "_adopt", "_history", "_hooks", "_requests", "_task",
                 "_want_up", "driver", "output", "settled", "snapshot", "task")

    def __init__(self, task: Task, driver: Driver, output: InstanceOutput, hooks: Hooks,
                 *, spec_hash: str, restarts: int = 0,
                 add_line_listener: LineListeners | None = None) -> None:
        self.task = task
        self.driver = driver
        self.output = output
        self._hooks = hooks
        self._add_line_listener = add_line_listener
        self.snapshot = Snapshot(
            name=task.instance, agent=task.agent, index=task.index, state=State.CREATED,
            health=Health.NONE if not (task.spec.readiness or task.spec.liveness)
            else Health.UNKNOWN,
            restarts=restarts, spec_hash=spec_hash,
        )
        self._want_up = True
        self._requests: Mailbox[Request] = Mailbox()
        self._history = _NO_HISTORY
        self._task: asyncio.Task[None] | None = None
        self._adopt: Handle | None = None
        self.settled = Flag()  # set whenever the instance rests (stopped/exited/fatal)

    # --- control from outside --------------------------------------------------------------

    def launch(self, adopt: Handle | None = None, *, up: bool = True) -> None:
        self._adopt = adopt
        self._want_up = up
        self._task = asyncio.create_task(self._loop(), name=f"runner:{self.task.instance}")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A runner only ends when closed; a bug that kills it must not hang ``stop``."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            import sys
            import traceback

            print(f"corral: runner {self.task.instance} failed:", file=sys.stderr)
            traceback.print_exception(exc, file=sys.stderr)
            self.snapshot = replace(self.snapshot, state=State.FATAL, pid=None, rerun=False,
                                    reason=f"internal error: {exc!r} (see the daemon log)")
            self.settled.set()

    def request(self, what: Request) -> None:
        if what != "stop" and self.snapshot.state in SETTLED:
            self._set(rerun=True)
        self._requests.put(what)

    async def stop(self) -> None:
        """Stop and wait until the instance rests."""
        self.settled.clear()
        self.request("stop")
        await self.settled.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.output.close()

    # --- state -----------------------------------------------------------------------------

    def _set(self, state: State | None = None, **changes: object) -> None:
        old = self.snapshot
        if state is not None:
            check_transition(old.state, state)
            changes["state"] = state
            if old.rerun and state is not old.state:  # the asked run has begun
                changes["rerun"] = False
        new = replace(old, **changes)  # type: ignore[arg-type]
        if new == old:
            return
        self.snapshot = new
        if state is not None and state in (State.STOPPED, State.EXITED, State.FATAL):
            self.settled.set()
        self._hooks.changed(old, new)

    # --- the lifecycle loop ----------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            try:
                await self._turn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug, or the host out of something: never a dead runner
                await self._internal_error(exc)

    async def _turn(self) -> None:
        """One pass of the lifecycle: rest until asked, or run once and decide what next."""
        adopt, self._adopt = self._adopt, None
        if not self._want_up:
            if self.snapshot.state not in (State.STOPPED, State.EXITED, State.FATAL):
                self._set(State.STOPPED, pid=None)
            self.settled.set()
            await self._next_request()
            return
        if adopt is not None:
            handle = adopt
            self._set(State.RUNNING, pid=handle.pid, started_at=handle.started_at,
                      handle=handle, runs_begun=self.snapshot.runs_begun + 1)
        else:
            started = await self._bring_up()
            if isinstance(started, ExitResult):  # it could not be spawned: a failed start
                now = self._hooks.clock.time()
                await self._decide(started, started_at=now, now=now)
                return
            if started is None:
                return
            handle = started
        result, why = await self._supervise(handle)
        self._record_exit(result)
        if self._hooks.ended is not None:
            await self._hooks.ended(self.task)
        if why == "stop":
            self._want_up = False
            self._set(State.STOPPED, pid=None, handle=None, reason="stopped on request")
            return
        if why == "restart":
            self._set(State.BACKOFF, pid=None, handle=None, reason="restarting on request",
                      restarts=self.snapshot.restarts + 1)
            return
        await self._decide(result, started_at=handle.started_at,
                           now=self._hooks.clock.time(),
                           verdict=why if isinstance(why, Verdict) else None)

    async def _decide(self, result: ExitResult, *, started_at: float, now: float,
                      verdict: Verdict | None = None) -> None:
        """Ask the restart policy about a run that ended (or never began) and follow it; a
        probe that asked for a restart has it at once."""
        decision = restart.decide(self.task.spec.restart, result, started_at=started_at,
                                  now=now, history=self._history)
        if verdict is not None and verdict.action == "restart":
            decision = restart.Decision("restart", 0.0, f"{verdict.reason}; restarting",
                                        decision.history)
        self._history = decision.history
        if decision.action == "exit":
            self._want_up = False
            # a start that failed never ran: it has no result to rest on as EXITED
            state = State.FATAL if result.error else State.EXITED
            self._set(state, pid=None, handle=None, reason=decision.reason)
        elif decision.action == "fatal":
            self._want_up = False
            self._set(State.FATAL, pid=None, handle=None, reason=decision.reason)
        else:
            self._set(State.BACKOFF, pid=None, handle=None, reason=decision.reason,
                      restarts=self.snapshot.restarts + 1)
            await self._interruptible_sleep(decision.delay)

    async def _internal_error(self, exc: Exception) -> None:
        """What no step expected: said in the daemon log with its traceback, the instance
        FATAL (what it left running is stopped), and the runner listening again, so that
        ``start``/``restart`` tries anew."""
        import sys
        import traceback

        print(f"corral: runner {self.task.instance} failed:", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)
        handle = self.snapshot.handle
        if handle is not None:
            with contextlib.suppress(Exception):
                await self.driver.stop(handle, sig=signal.SIGKILL, timeout=0)
        self._want_up = False
        old = self.snapshot
        # set past the transition check: the error may have come at any point
        self.snapshot = replace(old, state=State.FATAL, pid=None, handle=None, rerun=False,
                                reason=f"internal error: {exc!r} (see the daemon log)")
        self.settled.set()
        with contextlib.suppress(Exception):
            self._hooks.changed(old, self.snapshot)

    async def _next_request(self) -> None:
        what = await self._requests.get()
        if what in ("start", "restart"):
            self._want_up = True

    async def _interruptible_sleep(self, delay: float) -> bool:
        """Sleep through a backoff; True when a request came first (it has been applied)."""
        if delay <= 0:
            return False
        sleeper = asyncio.ensure_future(self._hooks.clock.sleep(delay))
        await any_done(self._requests.ready(), sleeper)
        if self._requests:
            sleeper.cancel()
            what = self._requests.pop()
            self._want_up = what != "stop"
            return True
        return False

    async def _with_secrets(self) -> Task | None:
        """The task with its secrets; until they can be had, BLOCKED with the one-line
        problem, retried with backoff (a file may appear, a vault be unlocked). None: a
        request came first."""
        assert self._hooks.secrets is not None
        delay = 2.0
        while True:
            try:
                return await self._hooks.secrets(self.task)
            except SecretError as exc:
                self._set(State.BLOCKED, reason=f"{exc}; retrying in {delay:g}s", pid=None)
            if await self._interruptible_sleep(delay) or not self._want_up:
                return None
            delay = min(delay * 2, 30.0)

    async def _bring_up(self) -> Handle | ExitResult | None:
        """Wait for dependencies, prepare, start. None: it did not start (state says why);
        an ExitResult: the start failed in a way a retry may fix (the restart policy's)."""
        spec = self.task.spec
        if spec.depends_on:
            self._set(State.WAITING, reason="waiting for dependencies")
            failure = await self._race(self._hooks.wait_dependencies(self.task.agent))
            if failure is _INTERRUPTED:
                return None
            if failure:
                self._want_up = False
                self._set(State.FATAL, reason=str(failure))
                return None
        task = self.task
        if self._hooks.secrets is not None:  # without secrets too: see Supervisor.secrets
            with_secrets = await self._with_secrets()
            if with_secrets is None:
                return None
            task = with_secrets
        try:
            self._set(State.PREPARING, reason="")
            prepared = await self._race(self.driver.prepare(self.task, self.output))
            if prepared is _INTERRUPTED:
                return None
            self._set(State.STARTING)
            # replicas sharing one port (SO_REUSEPORT) are checked once, by the first
            probes = [spec.readiness, spec.liveness] if self.task.index == 1 else []
            for host, port, kind in await taken_ports(probes):
                raise CorralError(
                    f"agents.{self.task.agent}: port {port} on {host} ({kind} probe target) is "
                    "already in use by another process",
                    "stop that process or change the agent's port")
            handle = await self.driver.start(task, self.output)
        except CorralError as exc:
            self._want_up = False
            self._set(State.FATAL, reason=str(exc), pid=None)
            return None
        except OSError as exc:
            # the host is out of something (descriptors, processes, memory): what the
            # manifest says is not at fault, and the start succeeds once there is room
            return ExitResult(code=None, error=f"start failed: {exc.strerror or exc}")
        probed = bool(spec.readiness or spec.liveness)
        # the last exit (code, signal, OOM) stays shown while the next run goes on: it is why
        # the instance restarted, which `corral ps` and the metrics must still tell
        self._set(State.RUNNING, pid=handle.pid, started_at=handle.started_at, handle=handle,
                  reason="", log_ready=False, health=Health.UNKNOWN if probed else Health.NONE,
                  runs_begun=self.snapshot.runs_begun + 1)
        asyncio.get_running_loop().call_later(0.1, self._complete_handle, handle)
        return handle

    def _complete_handle(self, handle: Handle) -> None:
        if self.snapshot.handle is handle:
            done = self.driver.complete(handle)
            if done is not handle:
                self._set(handle=done)

    async def _race(self, work: Awaitable[object]) -> object:
        """Run ``work`` unless a stop request comes first. A start or restart asked meanwhile
        is what is under way already: taken and dropped, and the stop still listened for
        (else a ``start`` of a waiting instance left it deaf to ``down``)."""
        job = asyncio.ensure_future(work)
        while True:
            await any_done(job, self._requests.ready())
            if not self._requests:
                return await job
            if self._requests.pop() == "stop":
                job.cancel()
                with contextlib.suppress(BaseException):
                    await job
                self._want_up = False
                return _INTERRUPTED

    async def _supervise(self, handle: Handle) -> tuple[ExitResult, str | Verdict]:
        """Until the instance ends: watch its exit, requests and probe verdicts. Why it
        ended: "exit", a request ("stop", "restart"), or a probe's verdict."""
        verdicts: Mailbox[Verdict] = Mailbox()
        running = probes.start(self.task, self.driver, verdicts, clock=self._hooks.clock,
                               set_state=self._set, current=lambda: self.snapshot.state,
                               add_line_listener=self._add_line_listener,
                               last_output=self._last_output)
        # a driver that tracks the exit with a future lends it: hooking on it spares a task
        # per instance for its whole life; else ``wait`` runs as that task
        lent = self.driver.exit_future(handle)
        waiter = lent if lent is not None else asyncio.ensure_future(self.driver.wait(handle))
        requests = self._requests
        why: str | Verdict = "exit"
        reason: str
        stop = self.task.spec.stop
        try:
            while True:
                if not (requests or verdicts or waiter.done()):
                    # verdicts come only from probes: no probe, nothing to hook on
                    await (any_done(waiter, requests.ready(), verdicts.ready())
                           if running.tasks else any_done(waiter, requests.ready()))
                if waiter.done():
                    # a request that raced with the exit still counts
                    if requests and (what := requests.pop()) in ("stop", "restart"):
                        why = what
                    break
                if requests:
                    what = requests.pop()
                    if what == "start":
                        continue
                    why = reason = what
                else:
                    why = verdicts.pop()
                    reason = why.reason
                sig = signal.SIGKILL if isinstance(why, Verdict) and why.action == "kill" \
                    else signal.Signals[stop.signal]
                self._set(State.STOPPING, reason=reason)
                await self.driver.stop(handle, sig=sig, timeout=stop.timeout)
                break
            result = await (self.driver.wait(handle) if lent is not None else waiter)
            if why == "exit":
                # the main process ended by itself: what it left behind ends with it
                # (docker/systemd semantics), so nothing outlives its instance
                await self.driver.stop(handle, sig=signal.Signals[stop.signal], timeout=0)
        finally:
            await running.close()
        if isinstance(why, Verdict) and why.action == "stop":
            why = "stop"
        return result, why

    def _last_output(self) -> float:
        return self.output.fed_at

    def _record_exit(self, result: ExitResult) -> None:
        self._set(exit_code=result.code, exit_signal=result.signal,
                  oom_killed=result.oom_killed, reason=result.describe())


_INTERRUPTED = object()
_NO_HISTORY = restart.History()  # frozen: every fresh runner shares it
