"""The daemon's side of forwarding: the forwarder process, started when the manifest has
``logs.forward`` (none otherwise: a fleet without forwarding imports and runs none of it),
replaced when that block changes, stopped with the daemon. It is handed the fleet's events
on its stdin (the spans of ``traces``), and its stdout brings back its events, which the
daemon keeps in the fleet's journal, and its counters, which ``/metrics`` shows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from corral.manifest import decode
from corral.manifest.spec import Manifest

Event = dict[str, Any]
RESPAWN = 5.0  # seconds before a forwarder that ended on its own is started again
STOP_WAIT = 20.0  # seconds a stopping forwarder gets to finish its sends
_STDIN_LIMIT = 1 << 20  # events waiting for the forwarder past this are left out


class Forwarding:
    def __init__(self, state_dir: str, record: Callable[[Event], Any]) -> None:
        self.state_dir, self._record = state_dir, record
        self.stats: dict[str, dict[str, Any]] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._config: Any = None
        self._secrets: dict[str, dict[str, str]] = {}
        self._traces = False
        self.stderr_path = os.path.join(state_dir, "forward", "forwarder.log")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def apply(
        self, manifest: Manifest | None, secret_headers: dict[str, dict[str, str]] | None = None
    ) -> None:
        """Run the forwarder ``manifest`` asks for (or none); a changed block restarts it.
        ``secret_headers``: per sink, the headers made of secrets, with their values: handed
        to the forwarder on its stdin, never written (a changed value restarts it too)."""
        targets = manifest.logs.forward if manifest is not None else []
        config = (
            {
                "project": manifest.name,
                "targets": decode.dump(targets),
                "secret_headers": bool(secret_headers),
            }
            if manifest is not None and targets
            else None
        )
        secrets = secret_headers or {}
        if config == self._config and secrets == self._secrets and (config is None or self.running):
            return
        await self.stop()
        self._config, self._secrets = config, secrets
        if config is None:
            self.stats = {}
            return
        root = os.path.join(self.state_dir, "forward")
        os.makedirs(root, mode=0o700, exist_ok=True)
        tmp = os.path.join(root, "config.json.new")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(config, f)
        os.replace(tmp, os.path.join(root, "config.json"))
        self._traces = any(t.otlp is not None and t.otlp.traces for t in targets)
        await self._spawn()

    async def _spawn(self) -> None:
        with open(self.stderr_path, "ab") as err:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "corral.logs.forward",
                self.state_dir,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env={
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    "CORRAL_STATE_DIR": self.state_dir,
                },  # whose it is, for a sweep by PID
                start_new_session=True,
                preexec_fn=_nice,
            )  # the fleet's own output comes first (bench/forward.py)
        if self._config and self._config.get("secret_headers"):  # its first line on stdin
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"headers": self._secrets}).encode() + b"\n")
        self._reader = asyncio.create_task(self._read(self._proc), name="forward-reader")

    def event(self, event: Event) -> None:
        """A fleet event, for the spans (only when a sink asked for traces)."""
        proc = self._proc
        if not self._traces or proc is None or proc.stdin is None or proc.returncode is not None:
            return
        if proc.stdin.transport.get_write_buffer_size() > _STDIN_LIMIT:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            proc.stdin.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "stats" in message:
                self.stats = message["stats"]
            elif "event" in message:
                sink = message.get("sink") or ""
                self._record(
                    {
                        "time": time.time(),
                        "agent": "",
                        "event": message["event"],
                        "instance": f"forward:{sink}" if sink else "forward",
                        "sink": sink,
                        "what": message.get("what"),
                        "reason": message.get("reason", ""),
                    }
                )
        code = await proc.wait()
        if self._proc is proc and code != 0:
            self._record(
                {
                    "time": time.time(),
                    "agent": "",
                    "event": "forward_exit",
                    "instance": "forward",
                    "reason": f"the log forwarder ended ({code}): see {self.stderr_path}; "
                    f"started again in {RESPAWN:g}s",
                    "exit_code": code,
                }
            )
            await asyncio.sleep(RESPAWN)  # its queues and cursor are on disk: it goes on
            if self._proc is proc:
                await self._spawn()

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_WAIT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 2)
            self._reader = None


def _nice() -> None:
    with contextlib.suppress(OSError):
        os.nice(5)
