"""The container transport over the engine's command line: a process per operation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping
from typing import Any

from corral.drivers.base import Stream
from corral.drivers.container.engine import Engine, EngineError, Result
from corral.drivers.container.runargs import RunSpec, cli_args
from corral.drivers.container.transport.base import (
    _CHUNK,
    _MISSING,
    LOOKUP,
    PULL_FIX,
    Feed,
    Found,
    LogStream,
    Progress,
)


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

    async def image_id(self, ref: str) -> str | None:
        return await self.engine.image_id(ref)

    async def pull(self, ref: str, progress: Progress | None = None) -> None:
        """``pull REF``: the engine's CLI reads its own credentials (Podman's auth file or
        ``$REGISTRY_AUTH_FILE``, Docker's config and credential helpers) and registries.conf;
        its progress lines (stdout and stderr together) are handed on as they come."""
        proc = await asyncio.create_subprocess_exec(
            *self.engine.argv("pull", ref), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        tail: list[bytes] = []
        try:
            async for raw in proc.stdout:
                tail = [*tail[-19:], raw]
                line = raw.decode("utf-8", "replace").strip()
                if progress is not None and line:
                    progress(line)
            code = await proc.wait()
        finally:
            _kill(proc)
            await proc.wait()
        if code != 0:
            got = Result(code, b"", b"".join(tail))
            raise _refused(self.engine, f"pulling {ref} failed", PULL_FIX, got)

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
            _kill(proc)
            await proc.wait()

    def cancel(self) -> None:
        self._cancelled = True
        if self._proc is not None:
            _kill(self._proc)


def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL by pid. ``Process.kill`` polls first, and that poll reaps a ``logs`` that has
    just exited (its pipes closed) before asyncio's child watcher does, which then prints
    "Unknown child process pid N" and reports 255. Unreaped, the pid cannot be reused."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
