"""The daemon's API: routes over the supervisor. The CLI, the dashboard and scripts share it.

Every route is described in ``openapi.py``, and every request is checked against that
description (``api.validate``) before its handler runs: a handler gets the parsed, bounded
body and the typed query, never the raw bytes. A request that breaks the description is a
400 with the problem and its fix, an unknown agent a 404; only a bug answers 500, and its
traceback is written to the daemon log once. ``tests`` check the routes and the document
stay in step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from corral import __version__
from corral.api import validate
from corral.api.http import Reply, Request, Stream, error_reply, json_reply
from corral.api.openapi import BODIES, PARAMETERS
from corral.errors import CorralError, ManifestError, NotFound
from corral.logs import query
from corral.manifest import decode
from corral.runtime.state import State
from corral.runtime.supervisor import Supervisor
from corral.runtime.views import readiness

WARM_DELAY = 0.2  # seconds from an instance with metrics: running to a round of scrapes
_UNSETTLED = {State.CREATED, State.WAITING, State.PREPARING, State.STARTING}


@dataclass(frozen=True, slots=True)
class Call:
    """A request that matched its route's description: ``body`` and ``args`` are checked."""

    req: Request
    body: dict[str, Any]
    args: dict[str, Any]


def _body(key: tuple[str, str], req: Request) -> dict[str, Any]:
    schema = BODIES.get(key)
    if schema is None:  # the route takes no body: whatever came is not read
        return {}
    value = validate.parse_json(req.body)
    validate.check(schema, value, "body")
    assert isinstance(value, dict)  # every body schema is an object's
    return value


def _readiness(runner: Any) -> str:
    return readiness(runner.snapshot, runner.task.spec)


def _ready_names(runners: list[Any]) -> list[str]:
    return [r.task.instance for r in runners if _readiness(r) == "ready"]


class Api:
    def __init__(self, sup: Supervisor, *, shutdown: Callable[[bool], None]) -> None:
        self.sup = sup
        self._shutdown = shutdown
        self.before_apply: Callable[[Any], Awaitable[None]] | None = None
        # the daemon's: opens the dashboard's listener (on the port asked, else the
        # manifest's) and answers its one-time link; None in a LocalFleet
        self.open_dashboard: Callable[[int | None], Awaitable[dict[str, Any]]] | None = None
        self._metrics: Any = None  # prometheus_client is imported at the first scrape
        self._scraper: Any = None  # metrics.scrape.Scraper: at the first scrape or warm-up
        self._warming: asyncio.TimerHandle | None = None
        sup.journal.listen(self._started)
        self.started_at = time.time()
        self._routes: dict[tuple[str, str], Callable[[Call], Awaitable[Reply | Stream]]] = {
            ("GET", "/v1/status"): self.status,
            ("GET", "/v1/runs"): self.runs,
            ("POST", "/v1/apply"): self.apply,
            ("POST", "/v1/wait"): self.wait,
            ("POST", "/v1/down"): self.down,
            ("POST", "/v1/start"): self.start,
            ("POST", "/v1/stop"): self.stop,
            ("POST", "/v1/restart"): self.restart,
            ("POST", "/v1/rm"): self.remove,
            ("POST", "/v1/scale"): self.scale,
            ("POST", "/v1/shutdown"): self.shutdown,
            ("GET", "/v1/exec"): self.exec_spec,
            ("GET", "/v1/logs"): self.logs,
            ("GET", "/v1/events"): self.events,
            ("GET", "/v1/journal"): self.journal,
            ("GET", "/v1/usage"): self.usage,
            ("POST", "/v1/dashboard"): self.dashboard,
            ("GET", "/"): self.page,
            ("GET", "/assets/{name}"): self.asset,
            ("GET", "/metrics"): self.render_metrics,
            ("GET", "/openapi.json"): self.openapi,
        }

    def routes(self) -> set[str]:
        return {path for _, path in self._routes}

    async def __call__(self, req: Request) -> Reply | Stream:
        key = (req.method, "/assets/{name}" if req.path.startswith("/assets/") else req.path)
        route = self._routes.get(key)
        if route is None:
            return error_reply(404, f"no route {req.method} {req.path}", "see /openapi.json")
        try:
            call = Call(req, _body(key, req), validate.query(PARAMETERS.get(key, []), req.query))
            return await route(call)
        except ManifestError as exc:
            return json_reply({"error": str(exc), "problems": exc.problems,
                               "fix": "send the manifest as 'corral config' prints it"}, 422)
        except CorralError as exc:
            return error_reply(404 if exc.exit_code == 4 else 400, exc.problem, exc.fix)
        except Exception as exc:  # a bug: answered 500, and its traceback logged once here
            traceback.print_exc(file=sys.stderr)
            return error_reply(500, f"internal error: {type(exc).__name__}: {exc}",
                               "see the daemon log in the state dir")

    # --- fleet -----------------------------------------------------------------------------

    async def status(self, call: Call) -> Reply:
        m = self.sup.manifest
        return json_reply({
            "project": m.name if m else None,
            "project_dir": m.project_dir if m else None,
            "daemon": {"pid": os.getpid(), "started_at": self.started_at,
                       "version": __version__},
            "instances": self.sup.status(),
            "agents": self._agents_view(),
        })

    def _agents_view(self) -> dict[str, Any]:
        """Each agent's replicas, class and what it depends on (the dashboard's graph)."""
        m = self.sup.manifest
        return {name: {"replicas": spec.replicas, "class": spec.class_,
                       "depends_on": {dep: d.condition for dep, d in spec.depends_on.items()}}
                for name, spec in (m.agents.items() if m is not None else ())}

    async def runs(self, call: Call) -> Reply:
        return json_reply({"runs": self.sup.runs()})

    async def apply(self, call: Call) -> Reply:
        # the CLI validated it; the daemon checks it again field by field, bounds included
        # (manifest.bounds; no pydantic: S2)
        body = call.body
        manifest = decode.manifest(body["manifest"])
        if self.before_apply is not None:  # the metrics port is bound first: a taken one
            await self.before_apply(manifest)  # is the up's error, not a line in the log
        report = await self.sup.apply(manifest, secret_env=body.get("secret_env") or {},
                                      only=body.get("only"), no_deps=body.get("no_deps", False),
                                      recreate=body.get("recreate", False))
        return json_reply(report)

    async def wait(self, call: Call) -> Reply:
        """Until every instance has left the start-up states, or with ``ready`` is ready or
        failed (or the timeout)."""
        runners = self.sup.select(call.body.get("names") or None)
        timeout = float(call.body.get("timeout", 60))
        if call.body.get("ready"):
            settled = await self._settle(runners, {}, timeout,
                                         lambda r: _readiness(r) != "pending")
            return json_reply({"settled": settled, "instances": self.sup.status(),
                               "ready": _ready_names(runners)})
        settled = await self._settle(runners, {}, timeout,
                                     lambda r: r.snapshot.state not in _UNSETTLED)
        return json_reply({"settled": settled, "instances": self.sup.status()})

    async def _settle(self, runners: list[Any], before: dict[str, Any], timeout: float,
                      rests: Callable[[Any], bool]) -> bool:
        """Until each runner ``rests``, and those named in ``before`` (instance ->
        its snapshot when a start was asked) have also moved on from that snapshot (a start
        request not yet taken up leaves a stopped instance stopped). Woken by state changes,
        not polled: the reply follows the change at once."""
        sub = self.sup.events.subscribe(64)  # only a wake-up: lost events are fine

        def done() -> bool:
            stuck = self.sup.behind_blocked()  # as settled as it gets until the user acts
            return all(r.task.agent in stuck or (
                rests(r) and r.snapshot is not before.get(r.task.instance))
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

    async def down(self, call: Call) -> Reply:
        return json_reply({"stopped": await self.sup.down()})

    async def start(self, call: Call) -> Reply:
        return await self._control(call, "start", "started")

    async def stop(self, call: Call) -> Reply:
        return json_reply({"stopped": await self.sup.stop(call.body.get("names") or None)})

    async def remove(self, call: Call) -> Reply:
        if not call.body["names"]:  # never "all": down is the whole fleet's
            raise validate.BadRequest("rm needs the agents or instances to remove",
                                      "name at least one")
        return json_reply({"removed": await self.sup.remove(call.body["names"])})

    async def restart(self, call: Call) -> Reply:
        return await self._control(call, "restart", "restarted")

    async def _control(self, call: Call, verb: str, key: str) -> Reply:
        """Start or restart; with ``wait`` (seconds), reply once each instance is ready or
        has failed to be (``settled`` false: the time ran out), with their rows and the
        names of the ready ones."""
        names, wait = call.body.get("names") or None, call.body.get("wait")
        runners = self.sup.select(names)
        before = {r.task.instance: r.snapshot for r in runners
                  if r.snapshot.state is not State.RUNNING or verb == "restart"}
        done = self.sup.start(names) if verb == "start" else self.sup.restart(names)
        if wait is None:
            return json_reply({key: done})
        settled = await self._settle(runners, before, float(wait),
                                     lambda r: _readiness(r) != "pending")
        rows = {r["name"]: r for r in self.sup.status()}
        return json_reply({key: done, "settled": settled, "ready": _ready_names(runners),
                           "instances": [rows[n] for n in done if n in rows]})

    async def scale(self, call: Call) -> Reply:
        body = call.body
        return json_reply(await self.sup.scale(body["agent"], body["replicas"]))

    async def shutdown(self, call: Call) -> Reply:
        stop_fleet = call.body.get("stop_fleet", True)
        stopped = await self.sup.down() if stop_fleet else []
        # after this reply has been written: the connection handler runs in the next ticks
        asyncio.get_running_loop().call_later(0.01, self._shutdown, stop_fleet)
        return json_reply({"stopped": stopped})

    async def exec_spec(self, call: Call) -> Reply:
        return json_reply(self.sup.exec_spec(call.args["agent"]))

    # --- logs and events -------------------------------------------------------------------

    def _filters(self, call: Call, *, stored: bool) -> query.Filters:
        """The record filters of a logs (``stored``: with its time bounds) or events query; a
        ``since``/``until`` that reads as no time and a grep pattern the ``re`` module refuses
        are 400s here, before any reply."""
        args = call.args
        try:
            since, until = (query.parse_since(args[key]) if stored and key in args else None
                            for key in ("since", "until"))
            return query.Filters.build(
                since=since, until=until, grep=args.get("grep"), level=args.get("level"),
                instances=args.get("instance") or (), run=args.get("run"))
        except ValueError as exc:
            raise validate.BadRequest(str(exc), validate.FIX) from None

    def _agents(self, call: Call, *, stored: bool) -> list[str] | None:
        """The agents a query names, with those of the instances it names (None: all); an
        agent neither in the fleet nor, with ``stored``, in the log store is a 404."""
        named: list[str] = call.args.get("agent") or []
        of_instances = [name.rpartition(".")[0] for name in call.args.get("instance") or ()]
        agents = list(dict.fromkeys([*named, *of_instances])) or None
        known = set(self.sup.manifest.agents) if self.sup.manifest is not None else set()
        if stored and agents:
            known |= set(query.agents_in(self.sup.layout.logs))
        for agent in agents or ():
            if agent not in known:
                raise NotFound(f"no agent named {agent!r}", "see 'corral ps' for the names")
        return agents

    async def logs(self, call: Call) -> Stream:
        agents = self._agents(call, stored=True)
        directory = self.sup.layout.logs
        filters = self._filters(call, stored=True)
        tail: int | None = call.args.get("tail")

        def read() -> list[dict[str, Any]]:
            if tail is not None:
                return query.tail(directory, agents, tail, filters=filters)
            return list(query.iter_records(directory, agents, filters=filters))

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

    async def events(self, call: Call) -> Stream:
        """Server-sent events: ``state`` changes, ``log`` records with ``logs=1``, the kept
        events (``journal``, as ``/v1/journal`` gives them) with ``journal=1``."""
        want_logs = call.args.get("logs") == "1"
        want_journal = call.args.get("journal") == "1"
        agents = set(self._agents(call, stored=False) or ())
        filters = self._filters(call, stored=False)
        sub = self.sup.events.subscribe()
        unsubs: list[Callable[[], None]] = []
        if want_logs and self.sup.manifest is not None:
            for agent in self.sup.manifest.agents:
                if agents and agent not in agents:
                    continue

                def on_records(encoded: bytes) -> None:
                    sub.offer({"type": "logs", "raw": encoded})

                unsubs.append(self.sup.log(agent).subscribe(on_records))
        if want_journal:
            unsubs.append(self.sup.journal.listen(
                lambda kept: sub.offer({**kept, "type": "journal"})))

        async def chunks() -> AsyncIterator[bytes]:
            try:
                yield b": corral events\n\n"
                while True:
                    # not wait_for: on 3.11 it swallows a cancel that comes as an event does
                    # (its inner get done), and the stream would outlive its reader
                    try:
                        async with asyncio.timeout(15):
                            event = await sub.get()
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if event.get("type") == "logs":
                        yield _log_events(event["raw"], filters)
                        continue
                    if agents and event.get("agent") not in agents:
                        continue
                    if event.get("type") == "journal":
                        kept = {k: v for k, v in event.items() if k != "type"}
                        yield b"event: journal\ndata: " + json.dumps(kept).encode() + b"\n\n"
                        continue
                    yield b"event: state\ndata: " + json.dumps(event).encode() + b"\n\n"
            finally:
                for u in unsubs:
                    u()
                sub.close()

        return Stream(chunks())

    async def journal(self, call: Call) -> Reply:
        """The kept events (``runtime.journal``) as JSON lines, oldest first; the new ones
        are followed on ``/v1/events?journal=1``."""
        agents: list[str] | None = call.args.get("agent") or None
        journal = self.sup.journal
        known = set(self.sup.manifest.agents) if self.sup.manifest is not None else set()
        for agent in agents or ():
            if agent not in known and not journal.history([agent], 1):
                raise NotFound(f"no agent named {agent!r}", "see 'corral ps' for the names")
        history = journal.history(agents, call.args.get("tail"))
        body = "".join(json.dumps(e) + "\n" for e in history).encode()
        return Reply(200, body, "application/x-ndjson")

    async def _usage(self) -> dict[str, tuple[float, int]]:
        """Each running instance's CPU seconds and resident bytes, as its driver reads them."""
        usage: dict[str, tuple[float, int]] = {}
        for r in self.sup.runners.values():
            handle = r.snapshot.handle
            if r.snapshot.state is State.RUNNING and handle is not None:
                u = await r.driver.stats(handle)
                if u is not None:
                    usage[r.task.instance] = (u.cpu_seconds, u.rss_bytes)
        return usage

    async def usage(self, call: Call) -> Reply:
        """CPU and memory now, without the agents' own scrapes ``/metrics`` makes."""
        usage = await self._usage()
        return json_reply({"time": time.time(), "instances": {
            name: {"cpu_seconds": cpu, "rss_bytes": rss} for name, (cpu, rss) in usage.items()}})

    async def render_metrics(self, _: object = None) -> Reply:
        usage = await self._usage()
        from corral.metrics import CONTENT_TYPE, Metrics
        from corral.metrics.scrape import CHANGED_WAIT, Scraper

        if self._metrics is None:
            self._metrics = Metrics()
        if self._scraper is None:
            self._scraper = Scraper()
        agents = await self._scraper.round(self._scrape_targets(), CHANGED_WAIT)
        forwarding = self.sup.forwarding
        body = self._metrics.render(self.sup.status(), usage, self.sup.log_lines(), agents,
                                    forwarding.stats if forwarding is not None else None)
        return Reply(200, body, CONTENT_TYPE)

    def _started(self, event: dict[str, Any]) -> None:
        """An instance with ``metrics:`` runs: a round of the agents' scrapes starts a moment
        later (``WARM_DELAY``, one for a burst of starts), so corral's next ``/metrics``
        answers from it without waiting on the agents."""
        if event.get("event") != "state" or event.get("state") != State.RUNNING.value:
            return
        runner = self.sup.runners.get(str(event.get("instance")))
        if runner is None or runner.task.spec.metrics is None or self._warming is not None:
            return
        with contextlib.suppress(RuntimeError):  # no loop: nothing serves /metrics either
            self._warming = asyncio.get_running_loop().call_later(WARM_DELAY, self._warm)

    def _warm(self) -> None:
        from corral.metrics.scrape import Scraper

        self._warming = None
        if self._scraper is None:
            self._scraper = Scraper()
        self._scraper.warm(self._scrape_targets())

    def _scrape_targets(self) -> list[Any]:
        """The running instances of agents with ``metrics:``, where the host reaches each."""
        from corral.manifest.peers import scrape_address
        from corral.metrics.scrape import Target

        targets = []
        for r in sorted(self.sup.runners.values(), key=lambda r: (r.task.agent, r.task.index)):
            spec = r.task.spec
            if spec.metrics is None or r.snapshot.state is not State.RUNNING:
                continue
            where = scrape_address(spec, r.task.index)  # None: the host cannot reach it
            host, port = (where.host, where.port or 0) if where is not None else (None, 0)
            targets.append(Target(r.task.agent, r.task.instance, host, port, spec.metrics.path))
        return targets

    async def dashboard(self, call: Call) -> Reply:
        if self.open_dashboard is None:
            raise CorralError("this fleet has no daemon to serve a dashboard",
                              "run the fleet with 'corral up -d', then 'corral dashboard'")
        return json_reply(await self.open_dashboard(call.body.get("port")))

    async def page(self, call: Call) -> Reply:
        return self._asset("index.html")

    async def asset(self, call: Call) -> Reply:
        return self._asset(call.req.path.removeprefix("/assets/"))

    def _asset(self, name: str) -> Reply:
        from corral import web

        found = web.asset(name)
        if found is None:
            raise NotFound(f"no dashboard asset {name!r}", "see / for the dashboard")
        return Reply(200, found[0], found[1])

    async def openapi(self, call: Call) -> Reply:
        from corral.api.openapi import spec

        return json_reply(spec())


def _log_events(raw: bytes, filters: query.Filters) -> bytes:
    out = []
    for line in raw.splitlines():
        if filters != _ALL:
            rec = json.loads(line)
            if not query.matches(rec, filters):
                continue
        out.append(b"event: log\ndata: " + line + b"\n\n")
    return b"".join(out)


_ALL = query.Filters()
