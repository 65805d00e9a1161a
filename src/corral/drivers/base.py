"""The driver interface (after Nomad's task drivers, narrowed and async).

Drivers start, wait, stop and pump output into the sink they are given. They never decide
restarts or health and never write logs to disk: the runner and the log store do (a driver
whose instances run elsewhere only runs single checks there when asked: ``check_remote``).
A ``Handle`` is frozen and serialisable so a restarted daemon can re-attach to what still runs.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from corral.errors import CorralError, DriverError
from corral.lean.record import Record, record
from corral.manifest.spec import Agent, Probe

Stream = Literal["stdout", "stderr"]


class Output(Protocol):
    """Where a driver pumps an instance's raw output; framing into records happens behind it."""

    def feed(self, stream: Stream, data: bytes) -> None: ...

    def eof(self, stream: Stream) -> None: ...


class InstanceOutput(Output, Protocol):
    """What a runner holds for its instance's whole life (``logs.sink.InstanceOutput``): the
    driver's ``Output``, closed when the runner is. ``fed_at``: when it last had output
    (unix seconds; 0: never), for the silence probe."""

    fed_at: float

    def close(self) -> None: ...


@runtime_checkable
class HostProcesses(Protocol):
    """A driver whose instances are children of the supervisor's process: the daemon's orphan
    sweep must leave their pids to the driver's own pidfd watchers."""

    def known_pids(self) -> set[int]: ...


@record
class Task(Record):
    """Everything a driver needs to start one instance of an agent."""

    project: str
    agent: str
    instance: str
    index: int
    spec: Agent
    workdir: str  # absolute
    run_dir: str  # private per-instance runtime dir (fifos, pid files) under the state dir
    cache_dir: str  # shared cache (venvs...) under the state dir
    # the complete environment of the agent; read-only: a supervisor shares what its
    # replicas have in common (a ChainMap over one dict per agent) instead of copying it
    env: Mapping[str, str]
    project_dir: str = ""  # absolute; the sandbox hides it (other agents' files live there)
    # files no sandbox shows unless a volume names them: secret sources, env files, manifest
    masked: tuple[str, ...] = ()
    # (name, address): the other agents' names as they resolve inside its sandbox or
    # container (``manifest.peers.hosts``)
    hosts: tuple[tuple[str, str], ...] = ()


@record
class Handle(Record):
    driver: str
    instance: str
    pid: int | None
    started_at: float  # wall clock, seconds
    # Kernel start time of ``pid`` (clock ticks since boot, /proc/PID/stat field 22): a pid
    # alone may be reused after a daemon restart; the pair is unique.
    pid_start: int | None = None
    data: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"driver": self.driver, "instance": self.instance, "pid": self.pid,
                           "started_at": self.started_at, "pid_start": self.pid_start,
                           "data": self.data}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Handle:
        raw: dict[str, Any] = json.loads(text)
        return cls(**raw)


@record
class ExitResult(Record):
    code: int | None  # None: unknown (e.g. the instance exited while re-adopted)
    signal: int | None = None
    oom_killed: bool = False
    error: str | None = None  # the driver could not run it at all

    @property
    def success(self) -> bool:
        return self.code == 0 and self.signal is None and self.error is None

    def describe(self) -> str:
        if self.error:
            return self.error
        if self.oom_killed:
            return "killed: out of memory"
        if self.signal is not None:
            import signal as _signal

            try:
                name = _signal.Signals(self.signal).name
            except ValueError:
                name = str(self.signal)
            return f"killed by {name}"
        if self.code is None:
            return "exited (code unknown: it ended while the supervisor was away)"
        return f"exited with code {self.code}"


@record
class Capabilities(Record):
    isolation: str  # process | venv | sandbox | container | vm | fake
    recover: bool  # handles survive a daemon restart
    stats: bool  # stats() returns usage
    signals: bool  # arbitrary stop signals are delivered
    exec_inside: bool = False  # exec() runs in the live instance (exec probes go through it)
    # check_remote() runs tcp, http, exec and heartbeat checks where the instance runs (a
    # cluster's node), for its probes
    probes_remote: bool = False


@record
class DriverHealth(Record):
    available: bool
    detail: str
    fix: str = ""


@record
class ResourceUsage(Record):
    cpu_seconds: float
    rss_bytes: int
    processes: int


class Driver(abc.ABC):
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    # the manifest blocks this driver owns, {agent key: a lean.record class} (by convention
    # its own name: ``container:``); validated by the CLI, decoded by the daemon, found in
    # ``task.spec.options`` (drivers.registry); ``hidden_blocks`` stay out of corral schema
    blocks: ClassVar[Mapping[str, type]] = {}
    hidden_blocks: ClassVar[frozenset[str]] = frozenset()

    async def check(self) -> DriverHealth:
        return DriverHealth(True, "built in")

    async def prepare(self, task: Task, progress: Output | None = None) -> None:  # noqa: B027
        """Idempotent preparation cached by content (a venv, an image). Default: nothing."""

    async def refresh(self, task: Task, progress: Output | None = None) -> bool:
        """At each apply (``corral up``): bring what the agent is made of up to date, as
        compose's ``up`` does (an image with ``pull_policy: always`` pulled again). True: it
        changed, so the agent's instances are recreated though their spec did not. Raising
        fails the apply, nothing changed. Default: nothing to refresh."""
        return False

    def inputs_digest(self, task: Task) -> str:
        """A digest of files the driver builds from, so a changed requirements file counts
        as a changed spec in a reconcile. Default: nothing."""
        return ""

    @abc.abstractmethod
    async def start(self, task: Task, output: Output) -> Handle: ...

    @abc.abstractmethod
    async def wait(self, handle: Handle) -> ExitResult: ...

    def exit_future(self, handle: Handle) -> asyncio.Future[ExitResult] | None:
        """The future ``wait`` awaits, when the driver keeps one. A runner then hooks on it
        instead of running ``wait`` as a task for the instance's whole life (a task fewer per
        idle instance: benchmark S2), and calls ``wait`` once it is done. Callers never
        cancel or resolve it. Default: None (the runner runs ``wait``)."""
        return None

    @abc.abstractmethod
    async def stop(self, handle: Handle, *, sig: int, timeout: float) -> None:
        """Deliver ``sig``; after ``timeout`` kill everything the instance started."""

    def complete(self, handle: Handle) -> Handle:
        """Details that are cheap a moment after start but costly right at it (the kernel
        start time of a pid that is still exec'ing). The runner calls it shortly after."""
        return handle

    async def recover(self, handle: Handle, output: Output) -> bool:
        """Re-attach to a running instance after a daemon restart. False: it is gone."""
        return False

    async def recovered(self) -> None:  # noqa: B027
        """The daemon's recovery is over: every handle it kept was offered to ``recover``.
        What the driver finds of this fleet's that nothing re-attached to may go now.
        Default: nothing."""

    async def stats(self, handle: Handle) -> ResourceUsage | None:
        return None

    def environment(self, task: Task) -> dict[str, str]:
        """The environment the agent's command gets (``corral exec``, ``exec_spec``): the
        task's, unless the driver adds to it (a venv's PATH). Default: the task's."""
        return dict(task.env)

    async def exec(self, task: Task, argv: list[str]) -> list[str]:
        """The argv that runs ``argv`` in the agent's environment (exec probes; ``corral exec``
        goes through ``enter``)."""
        return list(argv)

    def exec_env(self, task: Task) -> dict[str, str] | None:
        """The environment the argv of ``exec`` runs with when it runs inside (``exec_inside``):
        the agent's own where the command inherits it; None, the supervisor's (an engine's
        CLI, which gives the command the container's environment itself)."""
        return None

    async def check_remote(self, task: Task, probe: Probe, began: float) -> tuple[bool, str]:
        """One tcp, http, exec or heartbeat check of ``probe`` run where ``task``'s live
        instance runs (``probes_remote``): (passed, detail), as the supervisor's own checks
        say it. ``began``: when the run began (a heartbeat counts from then at the earliest).
        Raises ``DriverError`` when the instance cannot be reached."""
        raise NotImplementedError(f"the {self.name} driver runs its probes on the host")

    async def close(self) -> None:  # noqa: B027
        """The supervisor is leaving: release what the driver itself holds (connections, a
        helper service). Instances are not stopped here. Default: nothing."""

    # --- one-offs attached to a terminal: ``corral run`` and ``corral exec`` ----------------

    def one_off(self) -> Driver:
        """This driver as ``corral run``/``exec`` use it: for one instance, from the CLI, for
        as long as the command runs. Default: itself."""
        return self

    def foreground(self, task: Task, argv: list[str] | None = None) -> Launch | None:
        """After ``prepare``: the host process that runs the task's command (``argv``: that
        command instead, in the agent's environment) as a child of ``corral run``/``exec``.
        None: the command exists only inside what ``start`` makes (a container, a guest), so
        ``corral run`` goes through ``start`` and ``wait``, attached. Default: None."""
        return None

    async def enter(self, task: Task, argv: list[str],
                    running: Callable[[], list[int]]) -> Launch | None:
        """``corral exec``: the process that runs ``argv`` inside a running instance of the
        agent, found by the driver (``running``: the pids of the agent's running instances,
        asked of the daemon). None: the command runs beside the agent instead, in its
        environment (``foreground``). Raises when the level has no way in. Default: None."""
        return None

def _named(problem: str, agent: str) -> bool:
    head = f"agents.{agent}"
    return problem.startswith(head) and problem[len(head):len(head) + 1] in (":", ".")


@contextlib.contextmanager
def driver_errors(task: Task, doing: str = "", *, fix: str | None = None,
                  only: type[CorralError] = CorralError,
                  host: tuple[str, str] | None = None) -> Iterator[None]:
    """Where a driver calls what raises for the user (an engine, a builder, the limiter), its
    errors become one ``DriverError`` naming the agent once (httpx's
    ``map_httpcore_exceptions``): ``agents.NAME: [doing: ]problem``, with the error's fix
    unless ``fix`` is given. A problem that already names ``agents.NAME`` keeps its words.
    ``only``: the errors mapped (others pass as they are). ``host`` = (doing, fix): an
    ``OSError`` is mapped too (else it is left to the runner: a host short of something,
    which a retry may get past)."""
    try:
        yield
    except only as exc:
        problem = exc.problem
        if doing:
            problem = f"{doing}: {problem}"
        if not _named(problem, task.agent):
            problem = f"agents.{task.agent}: {problem}"
        if isinstance(exc, DriverError) and problem == exc.problem and fix is None:
            raise
        raise DriverError(problem, exc.fix if fix is None else fix) from None
    except OSError as exc:
        if host is None:
            raise
        raise DriverError(f"agents.{task.agent}: {host[0]}: {exc}", host[1]) from None


@record
class Launch(Record):
    """A process ``corral run``/``exec`` starts on this host: its child (``foreground``), or,
    exec'd in its place, one that enters a running instance (``enter``: nothing of the
    one-off's is left to clean up after it)."""

    argv: list[str]
    env: Mapping[str, str] | None = None  # None: corral's own
    cwd: str | None = None
    fds: tuple[int, ...] = ()  # descriptors the argv names, for the child to inherit
    # ``enter``'s: its environment is the agent's, as ``foreground`` gives it (filled in by
    # corral, which then execs it in its own place)
    agent_env: bool = False
