"""The ray driver's side of one bridge process (``bridge``): it starts it, sends it requests,
and hands the events it pushes to the runs they belong to (output to the run's sink, the exit
to the run's future). A bridge that dies ends every run it followed with an error naming it,
and fails the requests it had not answered."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import itertools
import json
import sys
from collections.abc import Mapping
from typing import Any

from corral.drivers.base import ExitResult, Output
from corral.drivers.ray import protocol
from corral.errors import DriverError

TAIL = 8  # the bridge's last stderr lines, named when it dies
LOOPBACK = "127.0.0.1"


class Link:
    def __init__(self, address: str, namespace: str,
                 env: Mapping[str, str] | None = None) -> None:
        self.address = address
        self.namespace = namespace
        self.env = env  # the bridge's; None: the driver's own
        self.proc: asyncio.subprocess.Process | None = None
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.outputs: dict[str, Output] = {}
        self.exits: dict[str, asyncio.Future[ExitResult]] = {}
        self.ids = itertools.count(1)
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL)
        self.gone: str | None = None  # why the bridge is no more
        self.host_ip = LOOPBACK  # this host's address as the cluster's nodes reach it
        self._readers: list[asyncio.Task[None]] = []

    async def open(self, timeout: float) -> None:
        """Start the bridge; back once it reached the cluster (else a ``DriverError``)."""
        self.host_ip = await reachable(self.address)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "corral.drivers.ray.bridge", self.address, self.namespace,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=protocol.LINE_LIMIT, env=self.env)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers.append(asyncio.create_task(self._stderr(self.proc.stderr)))
        try:
            first = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            await self.kill()
            raise DriverError(f"the Ray cluster at {self.address} did not answer within "
                              f"{timeout:g}s", "check that it runs and that ray.address "
                              "names its GCS (HOST:PORT)") from None
        event = json.loads(first) if first.strip() else {}
        if event.get("event") != "ready":
            await self.kill()
            if event.get("event") == "failed":
                raise DriverError(event["problem"], event["fix"])
            raise DriverError(f"the Ray bridge exited before reaching {self.address}: "
                              f"{self.describe_tail()}", "see the error above")
        self._readers.append(asyncio.create_task(self._events(self.proc.stdout)))

    def describe_tail(self) -> str:
        return " | ".join(self.tail) or "no output"

    async def _stderr(self, pipe: asyncio.StreamReader) -> None:
        while line := await pipe.readline():
            text = line.decode(errors="replace").strip()
            if text:
                self.tail.append(text[:300])

    async def _events(self, pipe: asyncio.StreamReader) -> None:
        try:
            while line := await pipe.readline():
                self._dispatch(json.loads(line))
        finally:
            await asyncio.sleep(0.1)  # its last words on stderr
            self._died()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "id" in msg:
            reply = self.replies.pop(msg["id"], None)
            if reply is not None and not reply.done():
                reply.set_result(msg)
            return
        run = msg.get("run", "")
        event = msg.get("event")
        output = self.outputs.get(run)
        if event == "output" and output is not None:
            output.feed(msg["stream"], base64.b64decode(msg["data"]))
            if "seq" in msg:  # a node's chunk (not a notice of the bridge's own)
                self._ack(run, msg["seq"])  # logged: its node may drop it
        elif event == "eof" and output is not None:
            output.eof(msg["stream"])
        elif event == "exit":
            self.outputs.pop(run, None)
            done = self.exits.get(run)
            if done is not None and not done.done():
                done.set_result(ExitResult(code=msg["code"], signal=msg["signal"],
                                           error=msg["error"]))

    def _ack(self, run: str, seq: int) -> None:
        stdin = self.proc.stdin if self.proc is not None else None
        if stdin is None or self.gone is not None or stdin.is_closing():
            return
        stdin.write(json.dumps({"op": "ack", "run": run, "seq": seq},
                               separators=(",", ":")).encode() + b"\n")

    def _died(self) -> None:
        if self.gone is None:
            self.gone = f"the Ray bridge to {self.address} exited: {self.describe_tail()}"
        for reply in self.replies.values():
            if not reply.done():
                reply.set_result({"error": self.gone})
        self.replies.clear()
        for run, output in self.outputs.items():
            output.eof("stdout")
            output.eof("stderr")
            done = self.exits.get(run)
            if done is not None and not done.done():
                done.set_result(ExitResult(code=None, error=self.gone))
        self.outputs.clear()

    def follow(self, run: str, output: Output) -> asyncio.Future[ExitResult]:
        """Where ``run``'s events go: registered before the start that makes them."""
        self.outputs[run] = output
        done: asyncio.Future[ExitResult] = asyncio.get_running_loop().create_future()
        self.exits[run] = done
        return done

    def forget(self, run: str) -> None:
        self.outputs.pop(run, None)
        self.exits.pop(run, None)

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """The bridge's answer to ``op``; raises ``DriverError`` with its one-line reason."""
        if self.gone is not None or self.proc is None or self.proc.stdin is None:
            raise DriverError(self.gone or "the Ray bridge is not running",
                              "corral starts a new one at the next start")
        rid = next(self.ids)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[rid] = reply
        line = json.dumps({"id": rid, "op": op, **fields}, separators=(",", ":"))
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self.replies.pop(rid, None)
            raise DriverError(f"the Ray bridge to {self.address} is gone: "
                              f"{self.describe_tail()}", "corral starts a new one at the "
                              "next start") from None
        msg = await reply
        if "error" in msg:
            raise DriverError(msg["error"], _fix(msg["error"]))
        found: dict[str, Any] = msg.get("ok") or {}
        return found

    async def close(self, timeout: float = 20) -> list[str] | None:
        """Ask the bridge to leave (node actors that run nothing go with it), then end it.
        The nodes where instances still run; None when the bridge could not say."""
        if self.proc is None:
            return None
        kept: list[str] | None = None
        if self.gone is None and self.proc.returncode is None:
            with contextlib.suppress(DriverError, TimeoutError):
                kept = list((await asyncio.wait_for(self.request("close"), timeout))["kept"])
            self.gone = f"the Ray bridge to {self.address} was closed"
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.kill()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return kept

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


async def reachable(address: str, timeout: float = 5) -> str:
    """The GCS answers at ``address`` (``HOST:PORT``, or ``ray://HOST:PORT``): checked before
    a bridge starts, as ``ray.init`` takes a minute to give up on an address that is wrong.
    Returns this host's address on the way there (where the cluster reaches this host)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise DriverError(f"ray.address {address!r} is not HOST:PORT",
                          "give the cluster's GCS address, e.g. 10.0.0.5:6379")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)),
                                           timeout)
    except (OSError, TimeoutError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no answer"
        raise DriverError(f"cannot reach the Ray cluster at {address}: {why}",
                          "start it (ray start --head) or fix ray.address") from None
    local = writer.get_extra_info("sockname")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return str(local[0]) if local else LOOPBACK


def _fix(problem: str) -> str:
    if "free" in problem:
        return "lower the agent's resources, or add nodes to the cluster"
    if "command not found" in problem or "workdir" in problem:
        return "install it on the cluster's nodes, or fix the agent's command and workdir"
    return "see the Ray cluster's state (ray status, ray list actors)"
