"""The engine operations a container's life is made of, behind one interface with two
implementations: the engine's REST API over its Unix socket (``api.ApiOps``, the hot path: a
request per step, a few milliseconds each) and its CLI (``CliOps``, a process per step,
~50-100 ms each), the fallback wherever no API socket answers (a remote ``DOCKER_HOST``, a
Podman that cannot serve one) or when ``CORRAL_CONTAINER_API=cli`` asks for it.

``for_engine`` picks one per engine, once per process (``service`` finds or starts the API).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal as _signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from corral.containers.engine import Engine, EngineError, Result
from corral.containers.runargs import RunSpec, cli_args
from corral.drivers.base import ExitResult, Stream

Feed = Callable[[Stream, bytes], None]
_CHUNK = 1 << 16
# the command lookup's exit code when the command is missing from the image
_MISSING = 42
LOOKUP = 'command -v "$0" >/dev/null || exit 42'


@dataclass(frozen=True, slots=True)
class Found:
    """A container found by its labels."""

    id: str
    name: str
    state: str  # "running", "exited", "created"…
    labels: Mapping[str, str]


class LogStream(Protocol):
    async def pump(self, feed: Feed) -> None:
        """Hand on the container's output from its start, until the engine ends the log
        (the container stopped) or ``cancel``."""

    def cancel(self) -> None: ...


class Ops(Protocol):
    engine: Engine
    via: str  # "api" or "cli", for messages and tests

    async def image_exists(self, ref: str) -> bool: ...

    async def containers(self, labels: Mapping[str, str]) -> list[Found]: ...

    async def ensure_network(self, name: str, project: str) -> None: ...

    async def ensure_volume(self, name: str, project: str) -> None: ...

    # True: ``command_missing`` reads a created container (give it one); False: it runs one
    # of its own from the image, at any time
    looks_in_container: bool

    async def command_missing(self, image: str, exe: str,
                              container: str | None = None) -> bool: ...

    async def run(self, spec: RunSpec, *, cwd: str) -> str: ...

    async def state(self, container: str) -> dict[str, Any] | None: ...

    async def wait(self, container: str, *, poll: float | None = None) -> int | None: ...

    async def kill(self, container: str, signal: str) -> None: ...

    async def remove(self, container: str) -> None: ...

    def logs(self, container: str, *, follow: bool = True) -> LogStream: ...


def _refused(eng: Engine, what: str, fix: str, got: Result) -> EngineError:
    return EngineError(f"{what}: {eng.name} says: {got.error_line()}", fix)


class CliOps:
    """The engine's command line, a process per operation."""

    via = "cli"
    looks_in_container = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def image_exists(self, ref: str) -> bool:
        return await self.engine.image_exists(ref)

    async def containers(self, labels: Mapping[str, str]) -> list[Found]:
        args = ["ps", "-a", "--no-trunc", "--format",
                "{{.ID}}\t{{.Names}}\t{{.State}}\t{{json .Labels}}"]
        for key, value in labels.items():
            args += ["--filter", f"label={key}={value}"]
        got = await self.engine.run(*args)
        if not got.ok:
            raise _refused(self.engine, "listing containers failed", "run `corral doctor`", got)
        found = []
        for line in got.out.decode().splitlines():
            parts = line.split("\t", 3)
            if len(parts) != 4:
                continue
            state = parts[2].lower()  # podman 4.3 prints "Up 3 seconds", docker "running"
            state = "running" if state.startswith(("up", "running")) else state
            labels_of: Any = {}
            with contextlib.suppress(ValueError):
                labels_of = json.loads(parts[3])
            if isinstance(labels_of, str):
                labels_of = _docker_labels(labels_of)
            found.append(Found(parts[0], parts[1], state,
                               labels_of if isinstance(labels_of, dict) else {}))
        return found

    async def ensure_network(self, name: str, project: str) -> None:
        await self._ensure("network", name, project)

    async def ensure_volume(self, name: str, project: str) -> None:
        await self._ensure("volume", name, project)

    async def _ensure(self, kind: str, name: str, project: str) -> None:
        """A network or volume, created with the project's label unless it exists."""
        eng = self.engine
        if (await eng.run(kind, "inspect", name)).ok:
            return
        got = await eng.run(kind, "create", "--label", f"corral.project={project}", name)
        if not got.ok and "exists" not in got.error_line():
            raise _refused(eng, f"cannot create {kind} {name}", "run `corral doctor`", got)

    async def command_missing(self, image: str, exe: str,
                              container: str | None = None) -> bool:
        """A throwaway ``run --rm`` asking the image's shell (``container`` is not needed)."""
        got = await self.engine.run("run", "--rm", "--network", "none", "--entrypoint",
                                    "/bin/sh", image, "-c", LOOKUP, exe)
        return got.code == _MISSING

    async def run(self, spec: RunSpec, *, cwd: str) -> str:
        argv, env = cli_args(spec, self.engine.name)
        # Podman's conmon inherits this cwd and drops an "oom" file into it when the kernel
        # OOM-kills in the container: the instance's run dir, where the driver looks.
        got = await self.engine.run(*argv, env=env, cwd=cwd)
        if not got.ok:
            await self.engine.remove(spec.name)  # created but not started: leave nothing
            raise EngineError(got.error_line(), "")
        return got.out.decode().strip().splitlines()[-1]

    async def state(self, container: str) -> dict[str, Any] | None:
        got = await self.engine.json("inspect", "--format", "{{json .State}}", container)
        return got if isinstance(got, dict) else None

    async def wait(self, container: str, *, poll: float | None = None) -> int | None:
        every = ["--interval", f"{round(poll * 1000)}ms"] if poll and self.engine.name == \
            "podman" else []
        got = await self.engine.run("wait", *every, container)
        try:
            return int(got.out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None

    async def kill(self, container: str, signal: str) -> None:
        await self.engine.run("kill", "--signal", signal, container)

    async def remove(self, container: str) -> None:
        await self.engine.remove(container)

    def logs(self, container: str, *, follow: bool = True) -> LogStream:
        return _CliLogs(self.engine, container, follow)


def _docker_labels(text: str) -> dict[str, str]:
    """Docker's ``{{json .Labels}}`` is a string ``k=v,k=v``; Podman's a JSON object."""
    out = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if sep:
            out[key] = value
    return out


class _CliLogs:
    """``logs [-f]``: the engine keeps stdout and stderr apart on its own two pipes."""

    def __init__(self, engine: Engine, container: str, follow: bool) -> None:
        self.engine = engine
        self.container = container
        self.follow = follow
        self._proc: asyncio.subprocess.Process | None = None
        self._cancelled = False

    async def pump(self, feed: Feed) -> None:
        if self._cancelled:
            return
        self._proc = proc = await asyncio.create_subprocess_exec(
            *self.engine.argv("logs", *(["-f"] if self.follow else []), self.container),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None

        async def one(stream: Stream, reader: asyncio.StreamReader) -> None:
            while chunk := await reader.read(_CHUNK):
                feed(stream, chunk)

        try:
            await asyncio.gather(one("stdout", proc.stdout), one("stderr", proc.stderr))
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()

    def cancel(self) -> None:
        self._cancelled = True
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()


# How often Podman is asked whether a container being stopped has exited yet (its default
# 250 ms stays for the long waits of running containers: hundreds of them poll at once).
STOPPING_POLL = 0.01


async def exit_code(ops: Ops, container: str, hurry: asyncio.Event) -> int | None:
    """The engine's ``wait``; once ``hurry`` is set (a stop signal was sent, the exit is
    due), also a wait that asks every ``STOPPING_POLL`` seconds: the first answer wins."""
    async def hurried() -> int | None:
        await hurry.wait()
        return await ops.wait(container, poll=STOPPING_POLL)

    tasks = [asyncio.ensure_future(ops.wait(container)), asyncio.ensure_future(hurried())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return done.pop().result()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def exit_result(code: int | None, state: Mapping[str, Any], oom: bool) -> ExitResult:
    """The engine's exit code (else its final state's); 128+N means signal N (what the init
    reports for a signalled agent, and what the engines report for a killed container)."""
    if code is None:
        code = int(state.get("ExitCode", -1))
    if state.get("OOMKilled") or (oom and code == 128 + _signal.SIGKILL):
        return ExitResult(code=code, signal=_signal.SIGKILL, oom_killed=True)
    if 128 < code < 128 + 65:
        return ExitResult(code=code, signal=code - 128)
    return ExitResult(code=code)


_chosen: dict[tuple[str, str], Ops] = {}


async def for_engine(engine: Engine, *, start_service: bool = True) -> Ops:
    """The API when its socket answers (for Podman, once this process started its service,
    unless ``start_service`` is False), else the CLI. Chosen once per engine and process;
    chosen again when the service it used has gone."""
    from corral.containers import service

    key = (engine.name, engine.binary)
    ops = _chosen.get(key)
    if ops is not None and (ops.via == "cli" or service.alive(getattr(ops, "socket", ""))):
        return ops
    if os.environ.get("CORRAL_CONTAINER_API", "auto") == "cli":
        ops = CliOps(engine)
    else:
        from corral.containers.api import ApiOps

        sock = await service.socket_for(engine, start=start_service)
        ops = CliOps(engine) if sock is None else ApiOps(engine, sock)
    if ops.via == "api" or start_service:  # a CLI chosen for want of a service: ask again
        _chosen[key] = ops
    return ops
