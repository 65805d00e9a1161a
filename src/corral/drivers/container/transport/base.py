"""The engine operations a container's life is made of: the ``Ops`` interface its two
transports implement, and what both share (``Found``, the exit code and result).

The transports are siblings that never import each other: the engine's REST API over its Unix
socket (``api.ApiOps``, the hot path: a request per step, a few milliseconds each) and its CLI
(``cli.CliOps``, a process per step, ~50-100 ms each), the fallback wherever no API socket
answers (a remote ``DOCKER_HOST``, a Podman that cannot serve one) or when
``CORRAL_CONTAINER_API=cli`` asks for it. ``auto.for_engine`` picks one per engine.
"""

from __future__ import annotations

import asyncio
import signal as _signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from corral.drivers.base import ExitResult, Stream
from corral.drivers.container.engine import Engine
from corral.drivers.container.runargs import RunSpec

Feed = Callable[[Stream, bytes], None]
Progress = Callable[[str], None]
_CHUNK = 1 << 16
# the command lookup's exit code when the command is missing from the image
_MISSING = 42
LOOKUP = 'command -v "$0" >/dev/null || exit 42'
PULL_FIX = ("check the image name and tag, and that you are logged in to its registry "
            "(`podman login` / `docker login`)")


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

    async def image_id(self, ref: str) -> str | None:
        """The ID of the image the engine has under ``ref``; None: it has none."""

    async def pull(self, ref: str, progress: Progress | None = None) -> None:
        """Pull ``ref`` from its registry with the engine's own credentials, progress as
        lines; a refusal raises ``EngineError`` with the engine's words."""

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
