"""An agent's ``on:`` hooks: host commands run on its fatal, restart and oom events.

A hook runs as the supervisor's user, in the project dir, with the event as one JSON object
on stdin, in a process group of its own. It never holds the supervisor up: it runs as a task
of its own (a subprocess the loop watches), at most ``CONCURRENT`` at once (the rest wait their
turn, at most ``QUEUED`` of them: beyond that an event's hooks are skipped, and said so), and
after its ``timeout`` the whole group is killed. What it printed (the last ``OUTPUT`` bytes)
and how it ended become a ``hook`` event in the journal, and a failure is said in the daemon's
log too: a failing hook is reported, never fatal to anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from corral.manifest.spec import EventHooks, Hook

CONCURRENT = 4
QUEUED = 64
OUTPUT = 4096
HOOKED = ("fatal", "restart", "oom")

Event = dict[str, Any]


class HookRunner:
    def __init__(self, record: Callable[[Event], object], *, cwd: Callable[[], str],
                 project: Callable[[], str]) -> None:
        self._record = record
        self._cwd = cwd
        self._project = project
        self._slots = asyncio.Semaphore(CONCURRENT)
        self._tasks: set[asyncio.Task[None]] = set()

    def on_event(self, hooks: EventHooks, event: Event) -> None:
        """Start the hooks ``event`` calls for (none for most events)."""
        kind = event.get("event")
        if kind not in HOOKED:
            return
        chosen = {"fatal": hooks.fatal, "restart": hooks.restart, "oom": hooks.oom}[kind]
        for hook in chosen:
            if len(self._tasks) >= QUEUED:
                self._report(event, hook, "skipped", None, "",
                             f"{QUEUED} hooks already running or waiting")
                continue
            task = asyncio.create_task(self._run(hook, event),
                                       name=f"hook:{kind}:{event.get('instance')}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Until every hook started so far has ended."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, hook: Hook, event: Event) -> None:
        async with self._slots:
            payload = json.dumps({**event, "project": self._project()}).encode() + b"\n"
            try:
                proc = await asyncio.create_subprocess_exec(
                    *hook.command, cwd=self._cwd(), stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True)
            except OSError as exc:
                self._report(event, hook, "failed", None, "",
                             f"cannot run {hook.command[0]}: {exc.strerror or exc}")
                return
            try:
                output = await asyncio.wait_for(_talk(proc, payload), hook.timeout)
            except TimeoutError:
                _kill_group(proc)
                await proc.wait()
                self._report(event, hook, "timeout", None, "",
                             f"killed after its timeout of {hook.timeout:g}s")
                return
            except asyncio.CancelledError:
                _kill_group(proc)
                await proc.wait()
                raise
            # what it left behind in its group ends with it
            _kill_group(proc)
            code = proc.returncode
            self._report(event, hook, "ok" if code == 0 else "failed", code,
                         output.decode(errors="replace"))

    def _report(self, event: Event, hook: Hook, result: str, code: int | None,
                output: str, detail: str = "") -> None:
        """The run as a ``hook`` event; one that did not succeed said in the daemon's log."""
        command = shlex.join(hook.command)
        reason = (f"{event['event']} hook {result}: {command}"
                  + (f" with exit code {code}" if code else "")
                  + (f" ({detail})" if detail else ""))
        if result != "ok":
            said = output.strip()[-500:]
            print(f"corral: {event['instance']}: {reason}" + (f": {said}" if said else ""),
                  file=sys.stderr, flush=True)
        self._record({"agent": event["agent"], "instance": event["instance"],
                      "time": time.time(), "event": "hook", "hook": event["event"],
                      "command": command, "result": result, "exit_code": code,
                      "output": output[-OUTPUT:], "reason": reason})


async def _talk(proc: asyncio.subprocess.Process, payload: bytes) -> bytes:
    """Hand the event over and keep the last ``OUTPUT`` bytes of what the hook says."""
    assert proc.stdin is not None and proc.stdout is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(payload)
        await proc.stdin.drain()
    proc.stdin.close()
    kept = bytearray()
    while chunk := await proc.stdout.read(65536):
        kept += chunk
        del kept[:-OUTPUT]
    await proc.wait()
    return bytes(kept)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
