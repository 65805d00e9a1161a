"""A scriptable driver for tests and demos: no processes, steps run on the event loop.

``fake: {steps: [{print: [a, b], sleep: 1}, {exit: 3}]}`` prints, sleeps, then exits 3. With no
``exit`` step the fake runs until stopped. ``start_error`` makes start() fail.
"""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

from corral.drivers.base import Capabilities, Driver, ExitResult, Handle, Output, Task
from corral.errors import DriverError
from corral.manifest.spec import FakeOptions


class FakeDriver(Driver):
    name: ClassVar[str] = "fake"
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="fake", recover=False, stats=False, signals=True
    )

    def __init__(self) -> None:
        self._runs: dict[str, asyncio.Task[ExitResult]] = {}
        self._stopped: dict[str, int] = {}
        self.started: list[str] = []  # instance names in start order, for tests

    async def start(self, task: Task, output: Output) -> Handle:
        options = task.spec.fake or FakeOptions()
        if options.start_error:
            raise DriverError(f"agents.{task.agent}: {options.start_error}", "fake start error")
        self.started.append(task.instance)
        self._runs[task.instance] = asyncio.create_task(self._script(options, output))
        return Handle(driver=self.name, instance=task.instance, pid=None, started_at=time.time())

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
