"""The daemon's API: routes over the supervisor. The CLI, the dashboard and scripts share it.

Every route is described in ``openapi.py``; ``tests`` check both stay in step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from corral import __version__
from corral.api.http import Reply, Request, Stream, error_reply, json_reply
from corral.errors import CorralError, ManifestError
from corral.logs import query
from corral.manifest import decode
from corral.runtime.state import State
from corral.runtime.supervisor import Supervisor

_UNSETTLED = {State.CREATED, State.WAITING, State.PREPARING, State.STARTING}
_ON_REQUEST = "restarting on request"


def _started(snap: Any) -> bool:
    """Where a start (or restart) ends: running, or failed to (a crash's backoff included),
    or stopped again; not the backoff a restart passes through on its way."""
    if snap.state is State.BACKOFF:
        return bool(snap.reason != _ON_REQUEST)
    return snap.state not in _UNSETTLED and snap.state is not State.STOPPING


class Api:
    def __init__(self, sup: Supervisor, *, shutdown: Callable[[bool], None]) -> None:
        self.sup = sup
        self._shutdown = shutdown
        self.after_apply: Callable[[], Awaitable[None]] | None = None
        self._metrics: Any = None  # prometheus_client is imported at the first scrape
        self.started_at = time.time()
        self._routes: dict[tuple[str, str], Callable[[Request], Awaitable[Reply | Stream]]] = {
            ("GET", "/v1/status"): self.status,
            ("POST", "/v1/apply"): self.apply,
            ("POST", "/v1/wait"): self.wait,
            ("POST", "/v1/down"): self.down,
            ("POST", "/v1/start"): self.start,
            ("POST", "/v1/stop"): self.stop,
            ("POST", "/v1/restart"): self.restart,
            ("POST", "/v1/scale"): self.scale,
            ("POST", "/v1/shutdown"): self.shutdown,
            ("GET", "/v1/exec"): self.exec_spec,
            ("GET", "/v1/logs"): self.logs,
            ("GET", "/v1/events"): self.events,
            ("GET", "/metrics"): self.render_metrics,
            ("GET", "/openapi.json"): self.openapi,
        }

    def routes(self) -> set[str]:
        return {path for _, path in self._routes}

    async def __call__(self, req: Request) -> Reply | Stream:
        route = self._routes.get((req.method, req.path))
        if route is None:
            return error_reply(404, f"no route {req.method} {req.path}", "see /openapi.json")
        try:
            return await route(req)
        except ManifestError as exc:
            return json_reply({"error": str(exc), "problems": exc.problems, "fix": ""}, 422)
        except CorralError as exc:
            return error_reply(400 if exc.exit_code != 4 else 404, exc.problem, exc.fix)
        except (ValueError, KeyError, TypeError) as exc:
            return error_reply(400, f"bad request: {exc}", "see /openapi.json")

    # --- fleet -----------------------------------------------------------------------------

    async def status(self, req: Request) -> Reply:
        m = self.sup.manifest
        return json_reply({
            "project": m.name if m else None,
            "project_dir": m.project_dir if m else None,
            "daemon": {"pid": os.getpid(), "started_at": self.started_at,
                       "version": __version__},
            "instances": self.sup.status(),
        })

    async def apply(self, req: Request) -> Reply:
        # the CLI validated it; the daemon only checks its shape (no pydantic here: S2)
        body = req.json()
        manifest = decode.manifest(body["manifest"])
        secret_env = body.get("secret_env") or {}
        if not isinstance(secret_env, dict):
            raise ValueError("secret_env must be an object of strings")
        report = await self.sup.apply(
            manifest, secret_env={str(k): str(v) for k, v in secret_env.items()})
        if self.after_apply is not None:
            await self.after_apply()
        return json_reply(report)

    async def wait(self, req: Request) -> Reply:
        """Until every instance has left the start-up states (or the timeout)."""
        body = req.json()
        runners = self.sup.select(body.get("names") or None)
        settled = await self._settle(runners, {}, float(body.get("timeout", 60)),
                                     lambda snap: snap.state not in _UNSETTLED)
        return json_reply({"settled": settled, "instances": self.sup.status()})

    async def _settle(self, runners: list[Any], before: dict[str, Any], timeout: float,
                      rests: Callable[[Any], bool]) -> bool:
        """Until each runner's snapshot ``rests``, and those named in ``before`` (instance ->
        its snapshot when a start was asked) have also moved on from that snapshot (a start
        request not yet taken up leaves a stopped instance stopped). Woken by state changes,
        not polled: the reply follows the change at once."""
        sub = self.sup.events.subscribe(64)  # only a wake-up: lost events are fine

        def done() -> bool:
            stuck = self.sup.behind_blocked()  # as settled as it gets until the user acts
            return all(r.task.agent in stuck or (
                rests(r.snapshot) and r.snapshot is not before.get(r.task.instance))
                for r in runners)

        try:
            deadline = time.monotonic() + timeout
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):  # then a last check, the deadline's
                    await asyncio.wait_for(sub.get(), min(left, 1.0))
            return True
        finally:
            sub.close()

    async def down(self, req: Request) -> Reply:
        return json_reply({"stopped": await self.sup.down()})

    async def start(self, req: Request) -> Reply:
        return await self._control(req, "start", "started")

    async def stop(self, req: Request) -> Reply:
        return json_reply({"stopped": await self.sup.stop(req.json().get("names"))})

    async def restart(self, req: Request) -> Reply:
        return await self._control(req, "restart", "restarted")

    async def _control(self, req: Request, verb: str, key: str) -> Reply:
        """Start or restart; with ``wait`` (seconds), reply once each instance is running or
        has failed to (``settled`` false: the time ran out), with their rows."""
        body = req.json()
        names, wait = body.get("names") or None, body.get("wait")
        runners = self.sup.select(names)
        before = {r.task.instance: r.snapshot for r in runners
                  if r.snapshot.state is not State.RUNNING or verb == "restart"}
        done = self.sup.start(names) if verb == "start" else self.sup.restart(names)
        if wait is None:
            return json_reply({key: done})
        settled = await self._settle(runners, before, float(wait), _started)
        rows = {r["name"]: r for r in self.sup.status()}
        return json_reply({key: done, "settled": settled,
                           "instances": [rows[n] for n in done if n in rows]})

    async def scale(self, req: Request) -> Reply:
        body = req.json()
        return json_reply(await self.sup.scale(str(body["agent"]), int(body["replicas"])))

    async def shutdown(self, req: Request) -> Reply:
        stop_fleet = bool(req.json().get("stop_fleet", True))
        stopped = await self.sup.down() if stop_fleet else []
        # after this reply has been written: the connection handler runs in the next ticks
        asyncio.get_running_loop().call_later(0.01, self._shutdown, stop_fleet)
        return json_reply({"stopped": stopped})

    async def exec_spec(self, req: Request) -> Reply:
        return json_reply(self.sup.exec_spec(req.arg("agent") or ""))

    # --- logs and events -------------------------------------------------------------------

    def _filters(self, req: Request) -> dict[str, Any]:
        since = req.arg("since")
        return {
            "since": query.parse_since(since, time.time()) if since else None,
            "grep": req.arg("grep"),
            "level": req.arg("level"),
            "instance": req.arg("instance"),
        }

    async def logs(self, req: Request) -> Stream:
        agents = req.query.get("agent") or None
        directory = os.path.join(self.sup.state_dir, "logs")
        filters = self._filters(req)
        tail = req.arg("tail")

        def read() -> list[dict[str, Any]]:
            if tail is not None:
                return query.tail(directory, agents, int(tail), **filters)
            return list(query.iter_records(directory, agents, until=None, **filters))

        records = await asyncio.get_running_loop().run_in_executor(None, read)

        async def chunks() -> AsyncIterator[bytes]:
            batch: list[str] = []
            for rec in records:
                batch.append(json.dumps(rec, separators=(",", ":")))
                if len(batch) >= 2000:
                    yield ("\n".join(batch) + "\n").encode()
                    batch = []
            if batch:
                yield ("\n".join(batch) + "\n").encode()

        return Stream(chunks(), content_type="application/x-ndjson")

    async def events(self, req: Request) -> Stream:
        """Server-sent events: ``state`` changes, and ``log`` records with ``logs=1``."""
        sub = self.sup.events.subscribe()
        want_logs = req.arg("logs") == "1"
        agents = set(req.query.get("agent") or [])
        filters = {k: v for k, v in self._filters(req).items() if k != "since" and v}
        unsubs: list[Callable[[], None]] = []
        if want_logs and self.sup.manifest is not None:
            for agent in self.sup.manifest.agents:
                if agents and agent not in agents:
                    continue

                def on_records(encoded: bytes) -> None:
                    sub.offer({"type": "logs", "raw": encoded})

                unsubs.append(self.sup.log(agent).subscribe(on_records))

        async def chunks() -> AsyncIterator[bytes]:
            try:
                yield b": corral events\n\n"
                while True:
                    try:
                        event = await asyncio.wait_for(sub.get(), 15)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if event.get("type") == "logs":
                        yield _log_events(event["raw"], filters)
                        continue
                    if agents and event.get("agent") not in agents:
                        continue
                    yield b"event: state\ndata: " + json.dumps(event).encode() + b"\n\n"
            finally:
                for u in unsubs:
                    u()
                sub.close()

        return Stream(chunks())

    async def render_metrics(self, req: Request) -> Reply:
        usage: dict[str, tuple[float, int]] = {}
        for r in self.sup.runners.values():
            handle = r.snapshot.handle
            if r.snapshot.state is State.RUNNING and handle is not None:
                u = await r.driver.stats(handle)
                if u is not None:
                    usage[r.task.instance] = (u.cpu_seconds, u.rss_bytes)
        from corral.metrics import CONTENT_TYPE, Metrics

        if self._metrics is None:
            self._metrics = Metrics()
        return Reply(200, self._metrics.render(self.sup.status(), usage), CONTENT_TYPE)

    async def openapi(self, req: Request) -> Reply:
        from corral.api.openapi import spec

        return json_reply(spec())


def _log_events(raw: bytes, filters: dict[str, Any]) -> bytes:
    out = []
    for line in raw.splitlines():
        if filters:
            rec = json.loads(line)
            if not query.matches(rec, **filters):
                continue
        out.append(b"event: log\ndata: " + line + b"\n\n")
    return b"".join(out)
