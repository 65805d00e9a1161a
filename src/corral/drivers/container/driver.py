"""The ``container`` isolation level: each instance is a Podman or Docker container.

The engine is driven through its REST API on its Unix socket (a request per step, a few ms),
or its CLI where no API answers (``containers.ops``; ``containers.service`` finds the socket or
starts Podman's). Start is a create and a start (``run -d`` on the CLI) with labels naming the
project, agent, instance and spec hash, the limits (``--cpus``, ``--memory`` with no swap on
top so the limit is the limit, ``--pids-limit``), an init (so the stop signal reaches the agent
and zombies are reaped), the agent's env (in the request body, or by name on the CLI: never in
an argv where ``ps`` shows it), volumes, secrets at ``/run/secrets`` and ports on 127.0.0.1.
Every container of a project joins ``corral-<project>`` with its agent's name as alias: agents
reach each other by name, as in compose.

What need not be asked again is asked once per driver (one per daemon, so per fleet): that an
image ref exists (pulled from its registry when ``container.pull_policy`` says: ``pull``), that
the project network and named volumes exist, that the command is in the image
(``container.prereqs``). Independent steps run at once: the label lookup, network and volume
checks before the create; the command lookup (first start of an image and command only)
alongside the create and start. The agent counts as running once the engine started it; the
log follower and the OOM watch attach after, losing nothing since the log is read from the
container's start.

Output is followed from the engine's log (``containers.follow``), which keeps filling while the
supervisor is away. Exit is the engine's ``wait``; its inspect tells an OOM kill apart. Stop is
the signal, the grace period, then a kill of the whole container, then its removal.
Re-adoption finds the container by its labels, so a restarted supervisor — or a second
``start`` of the same instance with the same spec — attaches to what runs instead of starting a
duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal as _signal
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, ClassVar

from corral.drivers.base import (
    Capabilities,
    Driver,
    DriverHealth,
    ExitResult,
    Handle,
    Launch,
    Output,
    ResourceUsage,
    Task,
    driver_errors,
)
from corral.drivers.container import build as builds
from corral.drivers.container import engine as engines
from corral.drivers.container import oneoff, rootless, runargs, service
from corral.drivers.container import options as container_block
from corral.drivers.container import pull as pulls
from corral.drivers.container.follow import Cursor, Follower
from corral.drivers.container.oom import OomWatch, usage
from corral.drivers.container.options import ContainerOptions as ContainerOptions
from corral.drivers.container.options import container_options
from corral.drivers.container.prereqs import Prereqs
from corral.drivers.container.runargs import container_name, spec_hash
from corral.drivers.container.transport import auto
from corral.drivers.container.transport import base as engine_ops
from corral.drivers.container.transport.base import Ops
from corral.drivers.host.options import venv_block
from corral.errors import CorralError, DriverError

BOOTSTRAPPED = "localhost/corral-"  # base images `corral image bootstrap` makes: never pulled


def _lines_to(progress: Output | None) -> Callable[[str], None] | None:
    """A build's or pull's progress lines, into the instance's output (its log)."""
    if progress is None:
        return None
    return lambda line: progress.feed("stdout", (line + "\n").encode())


class _Watch:
    __slots__ = ("exit", "follower", "hurry", "oom", "waiter")

    def __init__(self, exit: asyncio.Future[ExitResult], follower: Follower) -> None:
        self.exit = exit
        self.follower = follower
        self.oom = OomWatch()
        self.waiter: asyncio.Task[None] | None = None
        self.hurry = asyncio.Event()  # a stop was sent: the exit is due, ask more often


class ContainerDriver(Driver):
    name: ClassVar[str] = "container"
    blocks: ClassVar[Mapping[str, type]] = container_block.blocks
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="container", recover=True, stats=True, signals=True, exec_inside=True)

    def __init__(self, engine: engines.Engine | None = None, *, own_service: bool = True) -> None:
        self._engine = engine  # injected (tests, `--engine`), else chosen per agent
        # False: use an engine API that already answers, else the CLI; never start Podman's
        # service (a one-off `corral run` would pay its start for one container)
        self._own_service = own_service
        self.prereqs = Prereqs()
        self._watches: dict[str, _Watch] = {}
        self._pids: dict[str, int] = {}  # instance -> the container's init pid on the host

    # --- engine and image -----------------------------------------------------------------

    def engine_for(self, task: Task) -> engines.Engine:
        if self._engine is not None:
            return self._engine
        with driver_errors(task):
            return engines.find(container_options(task.spec).engine)

    async def ops(self, eng: engines.Engine) -> Ops:
        """The engine's API when it answers, else its CLI (see ``containers.ops``)."""
        return await auto.for_engine(eng, start_service=self._own_service)

    @staticmethod
    def _engine_of(handle: Handle) -> engines.Engine:
        return engines.Engine(handle.data["engine"], handle.data["binary"])

    async def check(self) -> DriverHealth:
        try:
            eng = self._engine or engines.find("auto")
        except CorralError as exc:
            return DriverHealth(False, exc.problem, exc.fix)
        got = await eng.run("version", "--format", "{{.Server.Version}}"
                            if eng.name == "docker" else "{{.Client.Version}}", timeout=15)
        if not got.ok:
            return DriverHealth(False, f"{eng.binary} does not answer: {got.error_line()}",
                                "start the engine (dockerd) or run `corral doctor`")
        return DriverHealth(True, f"{eng.name} {got.out.decode().strip()} at {eng.binary}")

    def _recipe(self, task: Task) -> builds.Recipe:
        opts = container_options(task.spec)
        venv = venv_block(task.spec)
        with driver_errors(task):
            return builds.recipe(
                task.workdir, build=opts.build, file=opts.file, base=opts.base,
                requirements=venv.requirements if venv else None,
                pyproject=venv.pyproject if venv else None,
                packages=tuple(venv.packages) if venv else ())

    def inputs_digest(self, task: Task) -> str:
        opts = container_options(task.spec)
        if opts.image is not None:
            return f"image:{opts.image}"
        return "build:" + builds.digest(self._recipe(task))

    async def refresh(self, task: Task, progress: Output | None = None) -> bool:
        """compose's ``up`` with ``pull_policy: always``: pull the image again; True when the
        tag now names another image (a push moved it), so its instances are recreated. An
        image the engine does not have yet is left to the start, which pulls it with its
        progress in the agent's log (a first pull can take longer than an apply is waited
        for)."""
        opts = container_options(task.spec)
        if opts.image is None or opts.pull_policy != "always":
            return False
        eng = self.engine_for(task)
        known = (eng.name, opts.image)
        with driver_errors(task):
            ops = await self.ops(eng)
            before = await ops.image_id(opts.image)
        if before is None:
            return False
        self.prereqs.present.discard(known)
        self.prereqs.pulled.discard(known)
        await self._pulled(task, eng, opts.image, "always", _lines_to(progress))
        with driver_errors(task):
            return await ops.image_id(opts.image) != before

    async def prepare(self, task: Task, progress: Output | None = None) -> None:
        rootless.refuse(task, self.engine_for(task))  # before a build it could not run after
        await self.image(task, progress)

    async def image(self, task: Task, progress: Output | None = None) -> str:
        """The agent's image: its ``image`` pulled as its ``pull_policy`` says, else built
        when needed (``corral build`` calls this too), a registry base pulled first."""
        eng = self.engine_for(task)
        opts = container_options(task.spec)
        say = _lines_to(progress)
        if opts.image is not None:
            await self._pulled(task, eng, opts.image, opts.pull_policy, say)
            return opts.image
        key = self.inputs_digest(task)

        async def build() -> str:
            r = self._recipe(task)
            tag = builds.tag_for(task.project, task.agent, key.partition(":")[2])
            if r.generated() and not r.base.startswith(BOOTSTRAPPED):
                await self._pulled(task, eng, r.base, opts.pull_policy, say)
            with driver_errors(task):
                return await builds.build(
                    eng, r, tag, staging_root=os.path.join(task.cache_dir, "builds"),
                    progress=say, pull=opts.pull_policy)

        return await self.prereqs.built(key, build)

    async def _pulled(self, task: Task, eng: engines.Engine, ref: str, policy: str,
                      say: Callable[[str], None] | None) -> None:
        """``ref`` present as ``policy`` says, pulled at most once per driver (so ``always``
        pulls once per ``up``), however many instances start at once. Once known to exist it
        is not asked about again: if it is removed later, the create says so."""
        known = (eng.name, ref)
        if known in self.prereqs.present:
            return
        async with self.prereqs.lock(f"image\0{eng.name}\0{ref}"):
            if known in self.prereqs.present:
                return
            if known in self.prereqs.pulled and policy == "always":
                policy = "missing"
            with driver_errors(task):
                if await pulls.ensure(await self.ops(eng), ref, policy, say):
                    self.prereqs.pulled.add(known)
            self.prereqs.present.add(known)

    async def pull(self, task: Task, progress: Output | None = None) -> str:
        """``corral pull``: the agent's image pulled now, whatever its policy says."""
        opts = container_options(task.spec)
        assert opts.image is not None
        eng = self.engine_for(task)
        say = _lines_to(progress)
        with driver_errors(task):
            await pulls.ensure(await self.ops(eng), opts.image, "always", say)
        return opts.image

    # --- start ----------------------------------------------------------------------------

    def _labels(self, task: Task, image: str) -> dict[str, str]:
        return {"corral.project": task.project, "corral.agent": task.agent,
                "corral.instance": task.instance, "corral.spec-hash": spec_hash(task, image)}

    async def start(self, task: Task, output: Output) -> Handle:
        eng = self.engine_for(task)
        rootless.refuse(task, eng)  # what it would ignore (limits) or fail at obscurely
        ops, image = await asyncio.gather(self.ops(eng), self.image(task))
        name = container_name(task.project, task.instance)
        labels = self._labels(task, image)
        os.makedirs(task.run_dir, mode=0o700, exist_ok=True)
        cursor_path = os.path.join(task.run_dir, "logs.cursor")
        data = {"engine": eng.name, "binary": eng.binary, "name": name,
                "cursor": cursor_path, "project": task.project}
        spec = runargs.spec(task, name=name, image=image, labels=labels,
                            published=tuple(container_options(task.spec).ports),
                            engine=eng.name)
        # independent engine calls at once: a start is mostly waiting for the engine
        existing, _, _ = await asyncio.gather(
            ops.containers({"corral.project": task.project, "corral.instance": task.instance}),
            self.prereqs.network(ops, task, spec), self.prereqs.named_volumes(ops, task, spec))
        for found in existing:
            same = found.labels.get("corral.spec-hash") == labels["corral.spec-hash"]
            if found.state == "running" and same:  # already ours: adopt, never duplicate
                handle = Handle(self.name, task.instance, None, time.time(),
                                data={**data, "container": found.id})
                if await self.recover(handle, output):
                    return replace(handle, pid=self._pids.get(task.instance))
            await ops.remove(found.id)
        for stale in (cursor_path, os.path.join(task.run_dir, "oom")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)  # a fresh container: its log starts empty, no OOM yet
        # the command lookup, first start of an image and command only: the API reads the
        # created container's files (a few ms, after its start: its root is mounted then);
        # the CLI runs a throwaway container, alongside this one's start
        runargs.recheck(task, spec)  # right before the create: nothing swapped since
        lookup: asyncio.Future[bool] | None = None
        # no command: the image's own CMD, which the image itself vouches for
        unknown = bool(task.spec.argv) and not self.prereqs.knows_command(
            eng.name, image, task.spec.argv[0])
        if unknown and not ops.looks_in_container:
            lookup = asyncio.ensure_future(self.prereqs.command_missing(ops, image, task, None))
        try:
            with driver_errors(task, f"{eng.name} could not start the container",
                               only=engines.EngineError, fix="fix the agent's command or "
                               "container block; `corral doctor` checks the engine"):
                cid = await self._create(ops, task, spec)
        except DriverError:
            if lookup is not None:
                lookup.cancel()
                await asyncio.gather(lookup, return_exceptions=True)
            raise
        if unknown and (await lookup if lookup is not None
                        else await self.prereqs.command_missing(ops, image, task, cid)):
            await ops.remove(cid)
            exe = task.spec.argv[0]
            raise DriverError(f"agents.{task.agent}: command not found: {exe} (in image {image})",
                              f"install it in the image or fix agents.{task.agent}.command")
        handle = Handle(self.name, task.instance, None, time.time(),
                        data={**data, "container": cid})
        await self._attach(ops, handle, output)
        return replace(handle, pid=self._pids.get(task.instance))

    async def _create(self, ops: Ops, task: Task, spec: runargs.RunSpec) -> str:
        """Create and start. A refusal may come from what was known going stale behind
        corral's back (the network or a volume removed by hand, the image too): that is
        asked again and the create retried, once."""
        try:
            return await ops.run(spec, cwd=task.run_dir)
        except engines.EngineError:
            if not self.prereqs.forget(ops.engine.name, spec):
                raise
        await asyncio.gather(self.prereqs.network(ops, task, spec),
                             self.prereqs.named_volumes(ops, task, spec), self.image(task))
        runargs.recheck(task, spec)
        return await ops.run(spec, cwd=task.run_dir)

    # --- output, exit ---------------------------------------------------------------------

    async def _attach(self, ops: Ops, handle: Handle, output: Output) -> None:
        cid = handle.data["container"]
        follower = Follower(ops.logs(cid), output, Cursor(handle.data["cursor"]),
                            rest=lambda: ops.logs(cid, follow=False))
        watch = _Watch(asyncio.get_running_loop().create_future(), follower)
        await follower.start()
        state = await ops.state(cid)
        pid = state.get("Pid") if state else None
        if isinstance(pid, int) and pid > 0:  # the agent's init, as the host sees it
            self._pids[handle.instance] = pid
            watch.oom.watch(pid)
        self._watches[handle.instance] = watch
        watch.waiter = asyncio.ensure_future(self._wait_exit(ops.engine, handle, watch))

    async def _wait_exit(self, eng: engines.Engine, handle: Handle, watch: _Watch) -> None:
        cid = handle.data["container"]
        try:
            code, state = await self._exit_of(eng, cid, watch.hurry)
            await watch.follower.finish(quick=0.05)
            watch.oom.settle()
            marker = os.path.join(os.path.dirname(handle.data["cursor"]), "oom")
            oom = watch.oom.killed or os.path.exists(marker)
            result = engine_ops.exit_result(code, state, oom)
            await (await self.ops(eng)).remove(cid)
        except Exception as exc:  # the result must always arrive, or wait() hangs
            result = ExitResult(code=None, error=f"lost the container: {exc}")
        finally:
            watch.oom.close()
            self._pids.pop(handle.instance, None)
        if not watch.exit.done():
            watch.exit.set_result(result)

    async def _exit_of(self, eng: engines.Engine, cid: str,
                       hurry: asyncio.Event) -> tuple[int | None, dict[str, Any]]:
        """The engine's ``wait``, then its final state. A wait cut off by the API going away
        (its service restarted) is asked again while the container still exists."""
        for attempt in range(3):
            ops = await self.ops(eng)
            try:
                code = await engine_ops.exit_code(ops, cid, hurry)
                return code, await ops.state(cid) or {}
            except engines.EngineError:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    async def wait(self, handle: Handle) -> ExitResult:
        watch = self._watches.get(handle.instance)
        if watch is None:
            return ExitResult(code=None, error="not started by this driver")
        result = await asyncio.shield(watch.exit)
        if self._watches.get(handle.instance) is watch:
            del self._watches[handle.instance]
        return result

    async def stop(self, handle: Handle, *, sig: int, timeout: float) -> None:
        ops = await self.ops(self._engine_of(handle))
        cid = handle.data["container"]
        watch = self._watches.get(handle.instance)
        if watch is not None and watch.exit.done():
            return
        await ops.kill(cid, _signal.Signals(sig).name)
        if watch is not None:
            watch.hurry.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(watch.exit), timeout)
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ops.wait(cid), timeout)
        if watch is None or not watch.exit.done():
            # the grace period is over: the whole container (its PID namespace) goes
            await ops.kill(cid, "SIGKILL")
        if watch is not None:
            await asyncio.shield(watch.exit)
        else:
            await ops.remove(cid)

    async def recover(self, handle: Handle, output: Output) -> bool:
        ops = await self.ops(self._engine_of(handle))
        found = await ops.containers({"corral.project": handle.data.get("project", ""),
                                      "corral.instance": handle.instance})
        ours = handle.data.get("container")
        running = [c for c in found if c.state == "running" and ours in (c.id, c.name)]
        if not running:
            for c in found:  # exited while the supervisor was away
                if ours in (c.id, c.name):
                    await self._drain(ops, handle, output)  # its last lines still count
                await ops.remove(c.id)
            return False
        await self._attach(ops, handle, output)
        return True

    @staticmethod
    async def _drain(ops: Ops, handle: Handle, output: Output) -> None:
        """What an exited container printed after the cursor (its log ends at once)."""
        follower = Follower(ops.logs(handle.data["container"], follow=False), output,
                            Cursor(handle.data["cursor"]))
        await follower.start()
        await follower.finish()

    async def stats(self, handle: Handle) -> ResourceUsage | None:
        pid = self._pids.get(handle.instance)
        if pid is None:
            state = await (await self.ops(self._engine_of(handle))).state(
                handle.data["container"])
            pid = state.get("Pid") if state else None
        if not isinstance(pid, int) or pid <= 0:
            return None
        return usage(pid)

    async def exec(self, task: Task, argv: list[str]) -> list[str]:
        eng = self.engine_for(task)
        return eng.argv("exec", "-i", container_name(task.project, task.instance), *argv)

    async def close(self) -> None:
        """The daemon is leaving (the fleet stopped, or left running to be re-adopted): stop
        following and waiting, then the Podman service this process started, if any."""
        for watch in self._watches.values():
            watch.follower.cancel()
            if watch.waiter is not None:
                watch.waiter.cancel()
        pending: list[asyncio.Future[Any]] = [
            w.waiter for w in self._watches.values() if w.waiter is not None]
        pending += [w.follower.done for w in self._watches.values()
                    if w.follower.done is not None]
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.to_thread(service.close_all)

    def one_off(self) -> ContainerDriver:  # one container: not worth a Podman service's start
        return ContainerDriver(self._engine, own_service=False)

    async def enter(self, task: Task, argv: list[str],
                    running: Callable[[], list[int]]) -> Launch:
        return await oneoff.enter(self.engine_for(task), task, argv)  # found by its labels
