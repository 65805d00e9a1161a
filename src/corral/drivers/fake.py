"""A scriptable driver for tests and demos: no processes, steps run on the event loop.

``fake: {steps: [{print: [a, b], sleep: 1}, {exit: 3}]}`` prints, sleeps, then exits 3. With no
``exit`` step the fake runs until stopped. ``start_error`` makes start() fail.

The ``fake:`` block is the driver's own (``blocks``), validated and decoded like any driver's,
but ``hidden``: ``corral schema`` leaves it out, since it is for tests, not for users' files.
A test may also hand the script to the driver itself (``FakeDriver(script=...)``, httpx's
``MockTransport(handler)`` habit); a block in the manifest wins over it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import field
from typing import Annotated, ClassVar, Literal

from corral.drivers.base import Capabilities, Driver, ExitResult, Handle, Output, Task
from corral.errors import DriverError
from corral.lean.record import Record, record
from corral.manifest.bounds import Range
from corral.manifest.rules import Duration, Within


@record(kw_only=True)
class FakeStep(Record):
    """One step of a scripted fake agent: print lines, sleep, then optionally exit."""

    __pydantic_config__ = {"extra": "forbid"}
    print: list[str] = field(default_factory=list)
    stream: Literal["stdout", "stderr"] = "stdout"
    sleep: Duration = 0.0
    exit: Annotated[int, Within(Range(0, 255))] | None = None


@record(kw_only=True)
class FakeOptions(Record):
    """The fake driver runs a script of steps in-process: for tests and demos, no processes."""

    __pydantic_config__ = {"extra": "forbid"}
    steps: list[FakeStep] = field(default_factory=list)
    start_error: str | None = None  # make start() fail with this message


blocks: dict[str, type[Record]] = {"fake": FakeOptions}
hidden = frozenset(blocks)  # not in the public schema
# a cluster for the tests of placement (``placement: fake``): a process agent placed there
# runs its ``fake:`` steps, as a remote backend runs what the agent declares
places = ("process",)


class FakeDriver(Driver):
    name: ClassVar[str] = "fake"
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="fake", recover=False, stats=False, signals=True
    )

    blocks: ClassVar[dict[str, type[Record]]] = blocks
    hidden_blocks: ClassVar[frozenset[str]] = hidden

    def __init__(self, script: FakeOptions | None = None) -> None:
        self._script_given = script
        self._runs: dict[str, asyncio.Task[ExitResult]] = {}
        self._stopped: dict[str, int] = {}
        self.started: list[str] = []  # instance names in start order, for tests

    async def start(self, task: Task, output: Output) -> Handle:
        options: FakeOptions = (task.spec.options.get("fake") or self._script_given
                                or FakeOptions())
        if options.start_error:
            raise DriverError(f"agents.{task.agent}: {options.start_error}", "fake start error")
        self.started.append(task.instance)
        self._runs[task.instance] = asyncio.create_task(self._script(options, output))
        # placed on the fake cluster: a node of it, as a remote backend names its nodes
        node = {"node": f"fake{task.index:04d}node", "node_ip": "127.0.0.2"} \
            if task.spec.placement == self.name else {}
        return Handle(driver=self.name, instance=task.instance, pid=None, started_at=time.time(),
                      data=node)

    async def _script(self, options: FakeOptions, output: Output) -> ExitResult:
        for step in options.steps:
            if step.print:
                output.feed(step.stream, "".join(f"{line}\n" for line in step.print).encode())
            if step.sleep:
                await asyncio.sleep(step.sleep)
            if step.exit is not None:
                return ExitResult(code=step.exit)
        await asyncio.Event().wait()  # runs until stopped
        raise AssertionError("unreachable")

    async def wait(self, handle: Handle) -> ExitResult:
        run = self._runs[handle.instance]
        try:
            return await asyncio.shield(run)
        except asyncio.CancelledError:
            if run.cancelled():
                sig = self._stopped.pop(handle.instance, 15)
                return ExitResult(code=128 + sig, signal=sig)
            raise

    async def stop(self, handle: Handle, *, sig: int, timeout: float) -> None:
        run = self._runs.get(handle.instance)
        if run is not None and not run.done():
            self._stopped[handle.instance] = sig
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
