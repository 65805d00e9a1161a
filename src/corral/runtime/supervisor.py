"""The supervisor: owns the runners, reconciles them with the manifest, answers for the fleet.

``apply`` is a reconcile by spec hash: only instances whose normalized spec changed are
restarted; new ones start, removed ones stop. Dependencies are awaited by the runners
themselves (``runtime.dependencies``); stopping goes in reverse dependency order.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from corral.drivers import registry
from corral.drivers.base import Driver, Handle, HostProcesses, Task
from corral.drivers.host import walls
from corral.errors import CorralError, NotFound
from corral.logs.forward.control import Forwarding
from corral.logs.sink import AgentLog
from corral.manifest import decode, graph, peers
from corral.manifest.spec import Agent, Manifest, instance_name, sink_names
from corral.paths import StateLayout
from corral.runtime import dependencies, journal
from corral.runtime.events import EventBus
from corral.runtime.fleetenv import FleetEnv
from corral.runtime.health import Clock, RealClock
from corral.runtime.hooks import HookRunner
from corral.runtime.keeper import SecretKeeper
from corral.runtime.runner import Hooks, Runner
from corral.runtime.schedule import Scheduled, run_view
from corral.runtime.state import State
from corral.runtime.store import Store
from corral.runtime.tasks import build_task
from corral.runtime.views import Snapshot, placement, public
from corral.secrets import SecretError


class Supervisor:
    def __init__(self, state_dir: str, *, store: Store, events: EventBus,
                 clock: Clock | None = None, drivers: dict[str, Driver] | None = None,
                 base_env: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.store = store
        self.events = events
        self.clock = clock or RealClock()
        self.manifest: Manifest | None = None
        self.runners: dict[str, Runner] = {}
        self.schedules: dict[str, Scheduled] = {}  # the scheduled agents' instances
        self._drivers: dict[str, Driver] = dict(drivers or {})
        self._recovery: asyncio.Future[None] | None = None  # while ``recover`` runs
        self._logs: dict[str, AgentLog] = {}
        self._changed = asyncio.Event()
        self.env = FleetEnv(os.environ if base_env is None else base_env, store)
        self.layout = StateLayout(state_dir)
        self._cache_dir = self.layout.cache  # one string for every task
        self._masks: tuple[Manifest | None, tuple[str, ...]] = (None, ())
        self._hosts: tuple[Manifest | None, dict[str, tuple[tuple[str, str], ...]]] = (None, {})
        self._hooks = Hooks(changed=self._on_change, wait_dependencies=self.wait_dependencies,
                            clock=self.clock, secrets=self.secrets, ended=self._ended_run)
        self._keeper: SecretKeeper | None = None
        self._identities: Any = None  # runtime.identities, for a fleet whose agents have one
        self._fleet_read: asyncio.Future[None] | None = None
        self.journal = journal.Journal(store)
        self.forwarding: Forwarding | None = None  # made by the first manifest forwarding logs
        self.events_out: Any = None  # cloud.events.EventPublisher, for a fleet with events:
        self.hooks = HookRunner(self.journal.record, cwd=self._project_dir,
                                project=lambda: self.manifest.name if self.manifest else "")
        # after `down`: the runners show how the fleet ended until the next apply, which
        # starts a new generation (every instance afresh: jobs run again, no old results)
        self._ended = False

    # --- parts ------------------------------------------------------------------------------

    def keeper(self) -> SecretKeeper:
        assert self.manifest is not None
        if self._keeper is None:
            self._keeper = SecretKeeper(self.state_dir, self.manifest.name, self._redact)
        return self._keeper

    async def identities(self) -> Any:
        """The agents' cloud identities (``runtime.identities``), made for the fleet's
        ``cloud:`` as it is now (imported by the first fleet that declares one)."""
        assert self.manifest is not None
        fleet = self.manifest.cloud
        if self._identities is None or self._identities.fleet != fleet:
            from corral.runtime.identities import Identities

            old, self._identities = self._identities, Identities(
                fleet, self.manifest.name, self.keeper(),
                redact=self._redact_grant, pid_of=self._pid_of)
            if old is not None:  # cloud: changed: its sockets go (their agents restart)
                await old.close()
        return self._identities

    def _redact_grant(self, values: Iterable[str]) -> None:
        self.env.redactor.add(values)

    def _pid_of(self, instance: str) -> int | None:
        runner = self.runners.get(instance)
        return runner.snapshot.pid if runner is not None else None

    def _redact(self, instance: str, values: Iterable[str]) -> None:
        self.env.redactor.add(values)

    def _read_fleet_secrets(self) -> None:
        """Every secret the manifest declares is read once per apply (and at recovery), in
        the background, so the outputs hide it before its own agent, or any, starts: an
        agent that did not declare a secret may still get it (a shared file, a neighbour)
        and print it. Failures are its owners' to report (they block on it)."""
        manifest = self.manifest
        self._fleet_read = None
        if manifest is None or not manifest.secrets:
            return
        self._fleet_read = asyncio.ensure_future(self.keeper().read_all(
            manifest.secrets, self.env.sent))

    async def secrets(self, task: Task) -> Task:
        """The runner's hook for every start: the fleet's secrets are known to the log
        outputs first, then the task gets its own."""
        if self._fleet_read is not None:
            await asyncio.shield(self._fleet_read)
        if task.spec.aws is not None:
            assert self.manifest is not None
            identities = await self.identities()
            with_identity: Task = await identities.task_with_identity(
                task, self.manifest.secrets, self.env.sent)
            return with_identity
        if not task.spec.secrets:
            return task
        return await self._task_with_secrets(task)

    def behind_blocked(self) -> set[str]:
        """Agents that wait, directly or not, on an instance BLOCKED until the user acts."""
        if self.manifest is None:
            return set()
        blocked = {r.task.agent for r in self.runners.values()
                   if r.snapshot.state is State.BLOCKED}
        behind: set[str] = set()
        for agent in blocked:
            behind |= graph.dependents(self.manifest, agent)
        return behind

    async def _task_with_secrets(self, task: Task) -> Task:
        assert self.manifest is not None
        return await self.keeper().task_with_secrets(task, self.manifest.secrets,
                                                     self.env.sent)

    def driver(self, name: str) -> Driver:
        if name not in self._drivers:
            self._drivers[name] = registry.load(name)()
        return self._drivers[name]

    def log(self, agent: str) -> AgentLog:
        if agent not in self._logs:
            assert self.manifest is not None
            cfg = self.manifest.logs
            self._logs[agent] = AgentLog(self.layout.logs, agent,
                                         max_size=cfg.max_size, keep=cfg.keep,
                                         max_age=cfg.max_age)
        return self._logs[agent]

    def log_lines(self) -> dict[str, list[int]]:
        """Records written per level (``logs.records.LEVELS``) by each agent's log."""
        return {agent: log.counts for agent, log in self._logs.items()}

    def known_pids(self) -> set[int]:
        pids: set[int] = set()
        for d in self._drivers.values():
            if isinstance(d, HostProcesses):
                pids |= d.known_pids()
        return pids

    def task(self, agent: str, index: int) -> Task:
        assert self.manifest is not None
        spec = self.manifest.agents[agent]
        name = instance_name(agent, index)
        shared = self.env.agent(self.manifest, agent, spec, self.state_dir)
        os.makedirs(shared["CORRAL_STATE_DIR"], exist_ok=True)
        return build_task(project=self.manifest.name, project_dir=self.manifest.project_dir,
                          agent=agent, spec=spec, instance=name, index=index, env=shared,
                          layout=self.layout, masked=self._masked(),
                          cache_dir=self._cache_dir, hosts=self._hosts_of(agent))

    def _masked(self) -> tuple[str, ...]:
        """The manifest's secret files, found once per manifest (one tuple for every task)."""
        assert self.manifest is not None
        if self._masks[0] is not self.manifest:
            self._masks = (self.manifest, walls.masked_files(self.manifest))
        return self._masks[1]

    def _hosts_of(self, agent: str) -> tuple[tuple[str, str], ...]:
        """The other agents' names inside ``agent``'s sandbox or container, once per
        manifest and agent."""
        assert self.manifest is not None
        if self._hosts[0] is not self.manifest:
            self._hosts = (self.manifest, {})
        found = self._hosts[1].get(agent)
        if found is None:
            found = self._hosts[1][agent] = peers.hosts(self.manifest.agents, agent)
        return found

    def spec_hash(self, agent: str, spec: Agent) -> str:
        assert self.manifest is not None
        task = self.task(agent, 1)
        return decode.spec_hash(
            spec, self.driver(spec.driver).inputs_digest(task).encode(),
            self.env.digest(self.manifest, spec),  # the environment: nothing without inherit_env
            peers.digest(task.env, task.hosts),  # where it finds the others
            self._identity_digest(spec))  # the fleet's cloud:, for an agent with an identity

    def _identity_digest(self, spec: Agent) -> bytes:
        if spec.aws is None:
            return b""
        from corral.runtime.identities import digest

        assert self.manifest is not None
        return digest(self.manifest, spec)

    # --- runners ---------------------------------------------------------------------------

    def _new_runner(self, agent: str, index: int, spec_hash: str, restarts: int = 0,
                    *, resume: bool = False) -> Runner:
        """``resume``: continue a line the previous daemon had only partly read."""
        task = self.task(agent, index)
        os.makedirs(task.run_dir, mode=0o700, exist_ok=True)
        out = self.log(agent).writer(task.instance,
                                     tail_file=os.path.join(task.run_dir, "partial-lines"))
        out.use_redactor(self.env.redactor)
        if resume:
            out.restore_from_tail_file()
        runner = Runner(task, self.driver(task.spec.driver), out, self._hooks,
                        spec_hash=spec_hash, restarts=restarts,
                        add_line_listener=out.listen_lines)
        if task.spec.schedule is not None:
            self.schedules[task.instance] = Scheduled(runner, out, task.spec.schedule,
                                                      self.store, self.clock)
        return runner

    def _launch(self, runner: Runner) -> None:
        """A new instance comes up: a scheduled one rests until its time (or run_on_start)."""
        scheduled = self.schedules.get(runner.task.instance)
        if scheduled is not None:
            runner.snapshot = replace(runner.snapshot, reason="scheduled: waits for its time")
        runner.launch(up=scheduled is None)
        if scheduled is not None:
            scheduled.begin(fresh=True)

    def _drop(self, name: str) -> Runner:
        scheduled = self.schedules.pop(name, None)
        if scheduled is not None:
            scheduled.close()
        return self.runners.pop(name)

    def _project_dir(self) -> str:
        return self.manifest.project_dir if self.manifest else self.state_dir

    def _on_change(self, old: Snapshot, new: Snapshot) -> None:
        self.store.put(new)
        if (scheduled := self.schedules.get(new.name)) is not None:
            scheduled.changed(old, new)
        if (old.state, old.health, old.pid, old.log_ready) != (
                new.state, new.health, new.pid, new.log_ready):
            self.events.publish({"type": "state", **public(new)})
            self._journal(old, new)
        if new.state is State.RUNNING and old.state is State.STARTING and new.runs_begun > 1:
            self._restart_dependents(new.agent)
        if new.state is not old.state and self._identities is not None:
            self._artifacts(old, new)
        self._changed.set()
        self._changed = asyncio.Event()

    def _artifacts(self, old: Snapshot, new: Snapshot) -> None:
        """``when: every``: an agent's artifacts go up each period while it runs."""
        runner = self.runners.get(new.name)
        if runner is None or runner.task.spec.artifacts is None:
            return
        if new.state is State.RUNNING:
            self._identities.every(runner.task, self.journal.record)
        elif old.state is State.RUNNING:
            self._identities.quiet(new.name)

    async def _ended_run(self, task: Task) -> None:
        """The runner's hook after a run: its artifacts go up (the outcome is an event)."""
        if task.spec.artifacts is None or self._identities is None:
            return
        self._identities.quiet(task.instance)
        try:
            await self._identities.upload_artifacts(task, "exit", self.journal.record)
        except Exception as exc:  # the runner goes on whatever the upload met
            self.journal.record({"agent": task.agent, "instance": task.instance,
                                 "event": "artifacts", "ok": False, "time": time.time(),
                                 "reason": f"upload failed: {exc!r}"})

    def _journal(self, old: Snapshot, new: Snapshot) -> None:
        """The change's events kept, and the agent's hooks on them started."""
        spec = self.manifest.agents.get(new.agent) if self.manifest is not None else None
        for event in journal.changes(old, new, self.clock.time()):
            kept = self.journal.record(event)
            if spec is not None:
                self.hooks.on_event(spec.on, kept)

    def _restart_dependents(self, agent: str) -> None:
        """compose's ``depends_on: {X: {restart: true}}``: X began a new run, so its
        dependents restart (a completed one runs again) and wait, as at any start, until X
        meets their condition again. A completed job they depend on that itself depends on X
        (a bucket made in the store that restarted) runs again first: until its new run
        completes, its old result meets no condition."""
        if self.manifest is None:
            return
        agents = self.manifest.agents
        wanting = {a for a, spec in agents.items()
                   if (rule := spec.depends_on.get(agent)) is not None and rule.restart}
        if not wanting:
            return
        jobs = {d for a in wanting for d in agents[a].depends_on} & graph.dependents(
            self.manifest, agent)
        for runner in self.runners.values():
            if runner.task.agent in jobs and runner.snapshot.state is State.EXITED:
                runner.request("start")
        for runner in self.runners.values():
            if runner.task.agent not in wanting:
                continue
            if runner.snapshot.state is State.RUNNING:
                runner.request("restart")
            elif runner.snapshot.state is State.EXITED:
                runner.request("start")

    def _desired(self, manifest: Manifest) -> dict[str, tuple[str, int]]:
        return {instance_name(a, i): (a, i)
                for a, spec in manifest.agents.items() for i in range(1, spec.replicas + 1)}

    async def apply(self, manifest: Manifest, *, secret_env: dict[str, str] | None = None,
                    only: list[str] | None = None, no_deps: bool = False,
                    recreate: bool = False) -> dict[str, list[str]]:
        """Reconcile the fleet with ``manifest``; returns what was done per instance.
        ``secret_env``: values of the variables the manifest's secrets read (kept in memory).
        ``only``: just these agents and, unless ``no_deps``, what they depend on (compose's
        ``up AGENT``): the others' instances are left as they are, and new ones of theirs
        are not created (``held``). ``recreate``: restart the chosen ones even if their spec
        hash did not change."""
        await self._recovery_over()
        scope = self._scope(manifest, only, no_deps)
        if self._ended:
            await self._new_generation()
        if secret_env is not None:
            self.env.receive(secret_env)
            for blocked in self.runners.values():  # try again now, with what was just sent
                if blocked.snapshot.state is State.BLOCKED:
                    blocked.request("start")
        old = self.manifest
        self.manifest = manifest
        try:
            stale = await self._refresh(scope)
        except BaseException:
            self.manifest = old  # a failed pull (pull_policy: always) changes nothing
            raise
        self.store.set_meta("manifest", decode.dump(manifest))
        await self._forward(manifest)
        self.env.applied(manifest)
        self._read_fleet_secrets()
        hashes = {a: self.spec_hash(a, s) for a, s in manifest.agents.items()}
        desired = self._desired(manifest)
        removed = [n for n in self.runners if n not in desired]
        changed = [n for n, r in self.runners.items() if n in desired and desired[n][0] in scope
                   and (recreate or desired[n][0] in stale
                        or r.snapshot.spec_hash != hashes[desired[n][0]])]
        await self._stop_ordered(removed + changed, old or manifest)
        # a recreated instance goes on counting runs: its next is a new run of the agent, which
        # its `restart: true` dependents follow
        begun = {name: self.runners[name].snapshot.runs_begun for name in changed}
        for name in removed + changed:
            await self._drop(name).close()
            if name in removed:
                self.store.delete(name)
        report: dict[str, list[str]] = {"started": [], "recreated": changed, "removed": removed,
                                        "unchanged": []}
        held = {n for n in self._held() if n in desired}
        for name, (agent, index) in desired.items():
            runner = self.runners.get(name)
            if agent not in scope:
                if runner is None:
                    held.add(name)
                continue
            held.discard(name)
            if runner is None:
                runner = self._new_runner(agent, index, hashes[agent])
                if begun.get(name):
                    runner.snapshot = replace(runner.snapshot, runs_begun=begun[name])
                self.runners[name] = runner
                self._launch(runner)
                if name not in changed:
                    report["started"].append(name)
            elif (scheduled := self.schedules.get(name)) is not None:
                if not scheduled.active:  # `up` after `down` or `stop`: its times again
                    scheduled.begin(fresh=True)
                    report["started"].append(name)
                else:
                    report["unchanged"].append(name)
            elif runner.snapshot.state in (State.STOPPED, State.FATAL):
                runner.request("start")
                report["started"].append(name)
            else:
                report["unchanged"].append(name)
        self.store.set_meta("held", sorted(held))
        self._close_unused_logs()
        return report

    async def _refresh(self, scope: set[str]) -> set[str]:
        """What the agents are made of brought up to date, as compose's ``up`` does: an
        image with ``pull_policy: always`` is pulled again. The agents whose image a push
        moved (their instances are recreated)."""
        assert self.manifest is not None
        agents = [a for a, spec in self.manifest.agents.items() if a in scope
                  and type(self.driver(spec.driver)).refresh is not Driver.refresh]

        async def one(agent: str, spec: Agent) -> bool:
            task = self.task(agent, 1)
            out = self.log(agent).writer(task.instance)  # the pull's progress: in its log
            out.use_redactor(self.env.redactor)
            try:
                return await self.driver(spec.driver).refresh(task, out)
            finally:
                out.close()

        moved = await asyncio.gather(*(one(a, self.manifest.agents[a]) for a in agents))
        return {a for a, changed in zip(agents, moved, strict=True) if changed}

    def _scope(self, manifest: Manifest, only: list[str] | None, no_deps: bool) -> set[str]:
        """The agents an apply acts on: all, or ``only`` and (unless ``no_deps``) their
        dependencies."""
        if only is None:
            return set(manifest.agents)
        for agent in only:
            if agent not in manifest.agents:
                raise NotFound(f"no agent named {agent!r} in the manifest",
                               "see 'corral config' for the agents")
        return set(only) if no_deps else graph.with_dependencies(manifest, only)

    def _held(self) -> set[str]:
        """Instances of the manifest's that are not created: removed with ``rm``, or left
        out by ``up AGENT``; the next ``up`` naming them (or all) creates them."""
        return set(self.store.get_meta("held") or ())

    async def remove(self, names: list[str]) -> list[str]:
        """compose's ``rm -s``: stop these agents' (or instances') instances and forget them:
        their runners and stored state (restarts, last exit) go; their logs stay."""
        await self._recovery_over()
        runners = self.select(names)
        gone = [r.task.instance for r in runners]
        if self.manifest is not None:
            await self._stop_ordered(gone, self.manifest)
        for name in gone:
            await self._drop(name).close()
            self.store.delete(name)
        self.store.set_meta("held", sorted(self._held() | set(gone)))
        return gone

    async def _new_generation(self) -> None:
        """Drop the runners of the generation ``down`` ended (all at rest)."""
        self._ended = False
        dropped = [self._drop(name) for name in list(self.runners)]
        await asyncio.gather(*(r.close() for r in dropped))

    def _cloud_events(self, manifest: Manifest) -> None:
        """``events:``: the journal's events to SQS/SNS (``corral.cloud.events``)."""
        if manifest.events is None:
            if self.events_out is not None:
                self.events_out.off()  # the spool stays: a later events: sends what waits
            return
        if self.events_out is None:
            from corral.cloud.events import EventPublisher

            self.events_out = EventPublisher(self.state_dir, manifest.name)
            self.journal.listen(self.events_out.event)
        self.events_out.apply(manifest.events, manifest.cloud)

    async def _forward(self, manifest: Manifest) -> None:
        """The forwarder ``logs.forward`` asks for; nothing is made for a fleet without."""
        self._cloud_events(manifest)
        if self.forwarding is None and not manifest.logs.forward:
            return
        if self.forwarding is None:
            self.forwarding = Forwarding(self.state_dir, self.journal.record)
            self.journal.listen(self.forwarding.event)
        await self.forwarding.apply(manifest, await self._secret_headers(manifest))

    async def _secret_headers(self, manifest: Manifest) -> dict[str, dict[str, str]]:
        """Each sink's ``secret_headers`` with their values, read now, kept in memory only."""
        targets = manifest.logs.forward
        wanted: dict[str, dict[str, str]] = {
            name: dict(getattr(getattr(t, t.kind), "secret_headers", {}))
            for t, name in zip(targets, sink_names(targets), strict=True)}
        names = {secret for headers in wanted.values() for secret in headers.values()}
        if not names:
            return {}
        try:
            values = await self.keeper().values(names, manifest.secrets, self.env.sent)
        except SecretError as exc:
            raise CorralError(f"logs.forward secret_headers: {exc}",
                              "make the secret readable, then 'corral up' again") from None
        return {sink: {h: values[s] for h, s in headers.items()}
                for sink, headers in wanted.items() if headers}

    def _close_unused_logs(self) -> None:
        assert self.manifest is not None
        for agent in [a for a in self._logs if a not in self.manifest.agents]:
            self._logs.pop(agent).close()

    async def recover(self) -> int:
        """After a daemon restart: rebuild runners from the store, re-adopting live instances.
        Returns how many were re-adopted. Then each driver hears that recovery is over.
        Meanwhile an ``apply``, ``stop`` or ``remove`` waits (``_recovery_over``): a request
        served during a slow re-adoption (a cluster's) would otherwise start a second
        instance of one not yet re-adopted."""
        self._recovery = asyncio.get_running_loop().create_future()
        try:
            return await self._recover()
        finally:
            try:
                for driver in list(self._drivers.values()):
                    await driver.recovered()
            finally:
                self._recovery.set_result(None)

    async def _recovery_over(self) -> None:
        if self._recovery is not None and not self._recovery.done():
            await asyncio.shield(self._recovery)

    async def _recover(self) -> int:
        raw = self.store.get_meta("manifest")
        if raw is None:
            return 0
        self.manifest = decode.manifest(raw)
        self.env.restore()
        try:
            await self._forward(self.manifest)
        except CorralError as exc:  # a secret header unreadable now: the fleet runs on
            print(f"corral: log forwarding: {exc.problem}", file=sys.stderr, flush=True)
        self._read_fleet_secrets()
        stored = self.store.instances()
        adopted = 0
        held = self._held()
        for name, (agent, index) in self._desired(self.manifest).items():
            if name in held:
                continue
            row = stored.get(name)
            spec_hash = row.spec_hash if row else self.spec_hash(agent,
                                                                 self.manifest.agents[agent])
            runner = self._new_runner(agent, index, spec_hash, row.restarts if row else 0,
                                      resume=True)
            self.runners[name] = runner
            handle = Handle.from_json(row.handle) if row and row.handle else None
            scheduled = self.schedules.get(name)
            back = handle is not None and await runner.driver.recover(handle, runner.output)
            if handle is not None and back:
                adopted += 1
                if runner.task.spec.aws is not None:  # its SDK asks the new daemon now
                    await (await self.identities()).rebind(runner.task)
                runner.launch(adopt=handle)
            elif row is not None and row.state in ("stopped", "exited", "fatal"):
                runner.snapshot = replace(runner.snapshot, state=State(row.state),
                                          exit_code=row.exit_code, reason=row.reason)
                runner.launch(up=False)
            else:
                runner.launch(up=scheduled is None)
            if runner.task.spec.artifacts is not None:  # an upload the last daemon began
                identities = await self.identities()
                if identities.pending(runner.task):
                    identities.after(runner.task, "resume", self.journal.record)
            if scheduled is not None:
                scheduled.recovered(back)
                if scheduled.active:  # the fleet was up: its times go on, missed ones too
                    scheduled.begin(fresh=False)
        return adopted

    # --- dependencies -----------------------------------------------------------------------

    async def wait_dependencies(self, agent: str) -> str | None:
        return await dependencies.wait(
            agent, manifest=lambda: self.manifest, changed=lambda: self._changed,
            snapshots=lambda dep: [r.snapshot for r in self.runners.values()
                                   if r.task.agent == dep])

    # --- control ----------------------------------------------------------------------------

    def select(self, names: list[str] | None) -> list[Runner]:
        if not names:
            return list(self.runners.values())
        out: list[Runner] = []
        for name in names:
            hits = [r for n, r in self.runners.items() if n == name or r.task.agent == name]
            if not hits and self.manifest is not None and name in self.manifest.agents:
                raise NotFound(f"agent {name} has no instances (removed, not up yet, or "
                               "scaled to 0)", f"create them with 'corral up {name}'")
            if not hits:
                raise NotFound(f"no agent or instance named {name!r}",
                               "see 'corral ps' for the names")
            out.extend(h for h in hits if h not in out)
        return out

    async def _stop_ordered(self, names: list[str], manifest: Manifest) -> None:
        if not names:
            return
        chosen = [self.runners[n] for n in names if n in self.runners]
        layers = graph.stop_order(manifest) if manifest.agents else []
        placed = {a for layer in layers for a in layer}
        layers = [*layers, sorted({r.task.agent for r in chosen} - placed)]
        for layer in layers:
            batch = [r for r in chosen if r.task.agent in layer]
            if batch:
                await asyncio.gather(*(r.stop() for r in batch))

    async def stop(self, names: list[str] | None = None) -> list[str]:
        await self._recovery_over()
        runners = self.select(names)
        for r in runners:  # a stopped scheduled agent waits for `start` or `up`
            if (scheduled := self.schedules.get(r.task.instance)) is not None:
                scheduled.pause()
        assert self.manifest is not None or not runners
        if self.manifest is not None:
            await self._stop_ordered([r.task.instance for r in runners], self.manifest)
        return [r.task.instance for r in runners]

    def _resume(self) -> None:
        """A start after ``down`` (its daemon kept) goes on with the ended generation."""
        if self._ended and self.manifest is not None:
            self._ended = False
            self.store.set_meta("manifest", decode.dump(self.manifest))

    def start(self, names: list[str] | None = None) -> list[str]:
        runners = self.select(names)
        self._resume()
        for r in runners:
            if (scheduled := self.schedules.get(r.task.instance)) is not None:
                scheduled.run_now()
            else:
                r.request("start")
        return [r.task.instance for r in runners]

    def restart(self, names: list[str] | None = None) -> list[str]:
        runners = self.select(names)
        self._resume()
        for r in runners:
            if (scheduled := self.schedules.get(r.task.instance)) is not None:
                scheduled.run_now(replace=True)
            else:
                r.request("restart" if r.snapshot.state is State.RUNNING else "start")
        return [r.task.instance for r in runners]

    async def scale(self, agent: str, replicas: int) -> dict[str, list[str]]:
        if self.manifest is None or agent not in self.manifest.agents:
            raise NotFound(f"no agent named {agent!r}", "see 'corral ps' for the names")
        spec = replace(self.manifest.agents[agent], replicas=replicas)
        agents = {**self.manifest.agents, agent: spec}
        return await self.apply(replace(self.manifest, agents=agents), only=[agent],
                                no_deps=True)

    async def down(self) -> list[str]:
        """Stop the fleet and end its generation: the next ``up`` re-runs completed jobs,
        and no restart count, last exit or result of this one carries over to it."""
        stopped = await self.stop(None)
        self.store.flush()
        self.store.forget_fleet()
        self._ended = True
        if self._identities is not None:
            await self._identities.close()
        if self._keeper is not None:
            self._keeper.forget()
        return stopped

    async def close(self) -> None:
        for scheduled in self.schedules.values():
            scheduled.close()
        await asyncio.gather(*(r.close() for r in self.runners.values()))
        if self.forwarding is not None:  # after the runners: their last records go too
            await self.forwarding.stop()
        if self.events_out is not None:  # after the runners: their last events go too
            await self.events_out.stop()
        await self.hooks.close()
        if self._identities is not None:
            await self._identities.close()
        await asyncio.gather(*(d.close() for d in self._drivers.values()))
        for log in self._logs.values():
            log.close()
        self.store.flush()

    # --- reading ----------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        now = self.clock.time()
        agents = self.manifest.agents if self.manifest is not None else {}
        columns = {a: placement(spec) for a, spec in agents.items()}
        rows = [{**public(r.snapshot, now), **columns.get(r.task.agent, {})} for r in sorted(
            self.runners.values(), key=lambda r: (r.task.agent, r.task.index))]
        uploads = self._identities.last if self._identities is not None else {}
        for row in rows:
            scheduled = self.schedules.get(row["name"])
            row["schedule"] = scheduled.view() if scheduled is not None else None
            row["artifacts"] = uploads.get(row["name"])  # its last upload (artifacts:)
        return rows

    def runs(self) -> list[dict[str, Any]]:
        """Every scheduled run kept, oldest first (``corral ps --all``)."""
        return [run_view(run) for run in self.store.runs()]

    def exec_spec(self, agent: str) -> dict[str, Any]:
        if self.manifest is None or agent not in self.manifest.agents:
            raise NotFound(f"no agent named {agent!r}", "see 'corral ps' for the names")
        task = self.task(agent, 1)
        env = self.driver(task.spec.driver).environment(task)
        return {"env": env, "cwd": task.workdir}


__all__ = ["CorralError", "Supervisor", "public"]
