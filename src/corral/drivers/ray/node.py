"""The supervisor of one Ray node's instances: the bridge makes it an actor (one per node,
detached, named ``corral-node-<node id>``, pinned to its node) that runs each instance's
command as a child process in a session of its own.

- output: each pipe is read in chunks kept with a sequence number per instance until the
  daemon acknowledges them through the bridge (``read(run, after, acked)``, a long poll), so a
  lost reply, a dead bridge or a killed daemon loses no line.
  The buffer is bounded: when full, the pipes are not read, which blocks the child, never
  drops what it wrote;
- exit: reported by ``read`` with the last chunks, once both pipes closed (or a moment after the
  command exited, when a grandchild keeps them open);
- stop: the signal to the process group, then after the grace period SIGKILL to the group and
  to every process carrying the run's marker variable (those that left the session);
- the children die with the actor (``PR_SET_PDEATHSIG``): a node whose raylet is gone runs
  nothing of corral's that a restart elsewhere would duplicate.

Secrets come in the environment of ``start``'s arguments, never in a ``runtime_env``, which
Ray shows in its job and actor info.

Probes: ``probe`` runs one check of a probe (``checks``) where the instance runs; the
supervisor keeps the loop and decides.

Usage: ``usage`` sums each run's process tree from /proc (``proctree``), for ``corral stats``,
``/metrics`` and the dashboard.

Plain Python on purpose: it imports nothing of corral's (but functions of ``checks`` with
``looks`` and ``beneath``, ``secretdir`` with ``privdir``, ``activation`` and ``proctree``,
shipped alike: never a module object, which would travel by name) or Ray's,
so the bridge ships it by value and a node needs neither corral installed nor the daemon's
files. File secrets arrive in ``start``'s arguments and go in a dir of their own
(``secretdir``), removed when the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import resource
import shutil
import signal
import time
from typing import Any

from corral.drivers.host.activation import venv_env
from corral.drivers.host.proctree import trees_usage
from corral.drivers.ray.checks import run_check
from corral.drivers.ray.secretdir import VARIABLE as SECRETS_DIR
from corral.drivers.ray.secretdir import remove as remove_secrets
from corral.drivers.ray.secretdir import write as write_secrets

CHUNK = 64 * 1024
BUFFER = 4 * 1024 * 1024  # per instance, unacknowledged: past it the pipes wait
EOF_GRACE = 1.0  # seconds the pipes may stay open after the command exited
_PR_SET_PDEATHSIG = 1
_RESET = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
          signal.SIGUSR2, signal.SIGPIPE)


def _child_setup(prctl: Any, limits: tuple[tuple[int, int], ...] = ()) -> None:
    """In the child, before exec: die with the actor, none of a Ray worker's signal manners
    (ignored or blocked signals are inherited through exec), and its rlimits."""
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    for which, value in limits:
        resource.setrlimit(which, (value, value))
    for sig in _RESET:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


class Run:
    """One instance's process and what it wrote that the bridge has not acknowledged."""

    def __init__(self, proc: asyncio.subprocess.Process, marker: bytes, cwd: str,
                 env: dict[str, str]) -> None:
        self.proc = proc
        self.cwd, self.env = cwd, env  # where its probes' checks run, and with what
        self.secrets_dir: str | None = None  # its secret files here, removed when it ends
        self.began = time.time()
        self.marker = marker  # b"NAME=VALUE" in the environ of every process it started
        self.chunks: list[tuple[int, str, bytes]] = []
        self.seq = 0
        self.buffered = 0
        self.eof: set[str] = set()
        self.exit: tuple[int, int | None] | None = None  # (code, signal), once reported
        self.exited = asyncio.Event()  # the command itself ended
        self.changed = asyncio.Event()
        self.drained = asyncio.Event()
        self.pumps: list[asyncio.Task[None]] = []


def rlimits(limits: dict[str, int]) -> tuple[tuple[int, int], ...]:
    """The agent's limits as this node enforces them on its process (the process level's
    fallback where no cgroup is written): ``memory`` as RLIMIT_AS (its address space: an
    allocation past it fails), ``pids`` as RLIMIT_NPROC (the user's processes; the kernel
    exempts root)."""
    out = []
    if limits.get("memory"):
        out.append((resource.RLIMIT_AS, int(limits["memory"])))
    if limits.get("pids"):
        out.append((resource.RLIMIT_NPROC, int(limits["pids"])))
    return tuple(out)


def gpu_ids() -> list[str]:
    """Run as a task in an instance's bundle: the GPU ids Ray gave it."""
    import ray

    return [str(i) for i in ray.get_gpu_ids()]


class Venv:
    """Holds one agent venv on its node (``venv``): Ray built it from the actor's
    ``runtime_env`` when the actor started, and keeps it while the actor lives."""

    async def where(self) -> str:
        import sys

        return sys.prefix


class Node:
    """Made remote by the bridge: ``ray.remote(num_cpus=0, max_concurrency=...)(Node)``."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        # loaded here, on the node: the class travels by value, a library handle cannot
        self._setup = functools.partial(_child_setup, ctypes.CDLL(None).prctl)

    async def start(self, run: str, argv: list[str], cwd: str, env: dict[str, str],
                    marker: str, venv: str | None = None,
                    limits: dict[str, int] | None = None,
                    files: dict[str, str] | None = None) -> dict[str, Any]:
        """Start ``argv`` (in the venv at ``venv``, if given, under ``limits``:
        ``rlimits``, with its secret ``files``: ``secretdir``); ``{"pid": PID}``, or
        ``{"error": ...}`` when it cannot run here."""
        if venv is not None:
            env = venv_env(venv, env)
        secrets_dir = None
        if files:
            try:
                secrets_dir = write_secrets(files)
            except (OSError, ValueError) as exc:
                return {"error": f"cannot write its secret files: {exc}"}
            env = {**env, SECRETS_DIR: secrets_dir}
        try:
            return await self._spawn(run, argv, cwd, env, marker, limits, secrets_dir)
        except BaseException:
            remove_secrets(secrets_dir)
            raise

    async def _spawn(self, run: str, argv: list[str], cwd: str, env: dict[str, str],
                     marker: str, limits: dict[str, int] | None,
                     secrets_dir: str | None) -> dict[str, Any]:
        if not os.path.isdir(cwd):
            return {"error": f"workdir does not exist on this node: {cwd}"}
        if shutil.which(argv[0], path=env.get("PATH", os.defpath)) is None:
            return {"error": f"command not found: {argv[0]}"}
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=functools.partial(self._setup, rlimits(limits or {})))
        except OSError as exc:
            remove_secrets(secrets_dir)
            return {"error": f"cannot run {argv[0]}: {exc.strerror or exc}"}
        state = Run(proc, f"{marker}={env.get(marker, '')}".encode(), cwd, env)
        state.secrets_dir = secrets_dir
        self.runs[run] = state
        assert proc.stdout is not None and proc.stderr is not None
        state.pumps = [asyncio.create_task(self._pump(state, "stdout", proc.stdout)),
                       asyncio.create_task(self._pump(state, "stderr", proc.stderr))]
        watcher = asyncio.create_task(self._watch(state))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return {"pid": proc.pid}

    @staticmethod
    async def _pump(state: Run, stream: str, pipe: asyncio.StreamReader) -> None:
        try:
            while True:
                while state.buffered >= BUFFER:
                    state.drained.clear()
                    await state.drained.wait()
                data = await pipe.read(CHUNK)
                if not data:
                    break
                state.seq += 1
                state.chunks.append((state.seq, stream, data))
                state.buffered += len(data)
                state.changed.set()
        finally:
            state.eof.add(stream)
            state.changed.set()

    @staticmethod
    async def _watch(state: Run) -> None:
        code = await state.proc.wait()
        state.exited.set()
        pending = set(state.pumps)
        while pending:  # a grandchild may hold the pipes: not past the grace, unless we do
            _, pending = await asyncio.wait(pending, timeout=EOF_GRACE)
            if pending and state.buffered < BUFFER:
                for pump in pending:
                    pump.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                break
        remove_secrets(state.secrets_dir)
        state.exit = (code, None) if code >= 0 else (128 - code, -code)
        state.changed.set()

    async def read(self, run: str, after: int, timeout: float,
                   acked: int | None = None) -> dict[str, Any]:
        """What ``run`` wrote past sequence ``after`` (what the bridge sent already), its
        closed streams, and its exit once all of it is out. Everything up to ``acked`` (what
        the daemon confirmed it logged; default ``after``) is dropped: the rest is kept, so a
        new bridge after a daemon restart reads it again. Waits up to ``timeout`` for
        something new."""
        state = self.runs.get(run)
        if state is None:
            return {"gone": True}
        acked = after if acked is None else min(acked, after)
        if state.chunks and state.chunks[0][0] <= acked:
            kept = [c for c in state.chunks if c[0] > acked]
            state.buffered = sum(len(c[2]) for c in kept)
            state.chunks = kept
            state.drained.set()
        new = [c for c in state.chunks if c[0] > after]
        if not new and state.exit is None:
            state.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.changed.wait(), timeout)
            new = [c for c in state.chunks if c[0] > after]
        exit_ = state.exit
        return {"chunks": new, "eof": sorted(state.eof),
                "exit": list(exit_) if exit_ is not None else None}

    async def stop(self, run: str, sig: int, timeout: float) -> None:
        """``sig`` to the run's process group; after ``timeout``, SIGKILL to all it started."""
        state = self.runs.get(run)
        if state is None:
            return
        if not state.exited.is_set():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(state.proc.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.exited.wait(), timeout)
        self._kill_all(state)
        await state.exited.wait()

    @staticmethod
    def _kill_all(state: Run) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(state.proc.pid, signal.SIGKILL)
        for pid in _marked(state.marker):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    async def probe(self, run: str, check: dict[str, Any]) -> dict[str, Any]:
        """One check of a probe of ``run``'s (``checks``), here where it runs."""
        state = self.runs.get(run)
        if state is None or state.exited.is_set():
            return {"ok": False, "detail": "the instance is not running on this node"}
        ok, detail = await run_check(check, state.cwd, state.env, state.began)
        return {"ok": ok, "detail": detail}

    async def usage(self, runs: list[str]) -> dict[str, list[float]]:
        """{run: [CPU seconds, resident bytes, processes]} of each of ``runs`` still running
        here: its command and every process under it, from one /proc scan."""
        pids = {state.proc.pid: run for run in runs
                if (state := self.runs.get(run)) is not None and not state.exited.is_set()}
        if not pids:
            return {}
        found = await asyncio.to_thread(trees_usage, list(pids))
        return {pids[pid]: [cpu, rss, count] for pid, (cpu, rss, count) in found.items()}

    async def forget(self, run: str) -> None:
        self.runs.pop(run, None)

    async def known(self, run: str) -> bool:
        """Whether ``run`` is here, running or ended with output still to read."""
        return run in self.runs

    async def listed(self) -> list[str]:
        """Every run here, running or ended but not forgotten."""
        return list(self.runs)

    async def alive(self) -> list[str]:
        """The runs whose command still runs."""
        return [run for run, state in self.runs.items() if not state.exited.is_set()]


def _marked(marker: bytes) -> list[int]:
    """Live processes whose environment holds ``marker`` (``NAME=VALUE``) exactly."""
    found = []
    own = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            found.append(int(entry))
    return found
