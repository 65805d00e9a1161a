"""Podman or Docker behind one small interface: find one, run its CLI without blocking the
loop, read its JSON.

The CLI serves what happens once or rarely (``build``, ``import``, ``version``, ``network
create``, ``corral down``'s clean-up, ``exec``) and is the fallback for the rest; the hot path
of a container's life (create, start, wait, kill, remove, logs) goes through the engine's REST
API when one answers (``ops``, ``api``, ``service``). Both engines accept the same flags for what
corral needs; where the two differ (``ps``'s JSON, the build log's step lines) the difference is
handled here or in ``build``, in one place.

``auto`` prefers Podman: no root daemon to keep alive, rootless where the host allows it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from corral.errors import CorralError

ENGINES = ("podman", "docker")
INSTALL_FIX = ("apt-get install podman runc (or docker.io), then run `corral doctor`")


class EngineError(CorralError):
    """The engine refused a command; ``problem`` carries its own last error line."""


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    out: bytes
    err: bytes

    @property
    def ok(self) -> bool:
        return self.code == 0

    def error_line(self) -> str:
        """The engine's own message: its last meaningful stderr line, prefixes trimmed."""
        lines = [ln.strip() for ln in self.err.decode("utf-8", "replace").splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith(("time=", "Run '", "See '"))] or [
            ln for ln in lines if ln] or [f"exit status {self.code}"]
        line = lines[-1]
        prefixes = ("docker: ", "Error: ", "Error response from daemon: ")
        while line.startswith(prefixes):
            line = line.partition(": ")[2]
        return line


@dataclass(frozen=True, slots=True)
class Engine:
    """One container engine's CLI. ``name`` is ``podman`` or ``docker``."""

    name: str
    binary: str

    def argv(self, *args: str) -> list[str]:
        return [self.binary, *args]

    async def run(self, *args: str, env: Mapping[str, str] | None = None,
                  stdin: bytes | None = None, timeout: float | None = None,
                  cwd: str | None = None) -> Result:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args), env=dict(env) if env is not None else None, cwd=cwd,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except (TimeoutError, asyncio.CancelledError):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        assert proc.returncode is not None
        return Result(proc.returncode, out, err)

    async def check(self, *args: str, what: str, fix: str,
                    env: Mapping[str, str] | None = None, timeout: float | None = None) -> bytes:
        """Run and return stdout; a failure raises one line: what failed, the engine's words."""
        got = await self.run(*args, env=env, timeout=timeout)
        if not got.ok:
            raise EngineError(f"{what}: {self.name} says: {got.error_line()}", fix)
        return got.out

    async def json(self, *args: str) -> Any:
        got = await self.run(*args)
        if not got.ok:
            return None
        return parse_json(got.out)

    async def image_exists(self, ref: str) -> bool:
        return await self.image_id(ref) is not None

    async def image_id(self, ref: str) -> str | None:
        """The ID of the image the engine has under ``ref``; None: it has none."""
        got = await self.run("image", "inspect", "--format", "{{.Id}}", ref)
        return (got.out.decode().strip() or None) if got.ok else None

    async def containers(self, labels: Mapping[str, str]) -> list[dict[str, str]]:
        """Containers (running or not) carrying every label: ``id``, ``name``, ``state``."""
        args = ["ps", "-a", "--no-trunc", "--format", "{{.ID}}\t{{.Names}}\t{{.State}}"]
        for key, value in labels.items():
            args += ["--filter", f"label={key}={value}"]
        got = await self.run(*args)
        if not got.ok:
            raise EngineError(f"{self.name} ps failed: {got.error_line()}", "run `corral doctor`")
        found = []
        for line in got.out.decode().splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                state = parts[2].lower()  # podman 4.3 prints "Up 3 seconds", docker "running"
                state = "running" if state.startswith(("up", "running")) else state
                found.append({"id": parts[0], "name": parts[1], "state": state})
        return found

    async def remove(self, container: str) -> Result:
        """Force-remove at once: whatever it runs has had its grace period (or never ran).
        Podman's ``rm -f`` would first give a running container its own 10 s stop timeout."""
        if self.name == "podman":
            return await self.run("rm", "-f", "-t", "0", container)
        return await self.run("rm", "-f", container)


def parse_json(raw: bytes) -> Any:
    """One JSON document, or Docker's one-object-per-line form (``--format '{{json .}}'``)."""
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def find(preference: str = "auto", *, path: str | None = None) -> Engine:
    """The engine to use. ``auto``: Podman, else Docker. ``CORRAL_CONTAINER_ENGINE`` overrides
    ``auto`` (so a whole test session or host can pin one without editing manifests)."""
    if preference == "auto":
        preference = os.environ.get("CORRAL_CONTAINER_ENGINE", "auto") or "auto"
    wanted: Sequence[str] = ENGINES if preference == "auto" else (preference,)
    if preference not in ("auto", *ENGINES):
        raise CorralError(f"unknown container engine {preference!r}",
                          "use engine: auto, podman or docker")
    for name in wanted:
        found = shutil.which(name, path=path)
        if found:
            return Engine(name, found)
    which = " or ".join(wanted)
    raise CorralError(f"no container engine: {which} is not installed", INSTALL_FIX)


def installed(*, path: str | None = None) -> list[Engine]:
    return [Engine(n, b) for n in ENGINES if (b := shutil.which(n, path=path))]
