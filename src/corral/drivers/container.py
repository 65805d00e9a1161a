"""The ``container`` isolation level: each instance is a Podman or Docker container.

Start is ``run -d`` with labels naming the project, agent, instance and spec hash, the limits
as engine flags (``--cpus``, ``--memory`` with no swap on top so the limit is the limit,
``--pids-limit``), ``--init`` (so the stop signal reaches the agent and zombies are reaped), the
agent's env passed by name (values travel in the engine CLI's environment, never in its argv
where ``ps`` shows them), volumes, secrets at ``/run/secrets`` and ports on 127.0.0.1. Every
container of a project joins ``corral-<project>`` with its agent's name as alias: agents reach
each other by name, as in compose.

Output is followed from the engine's log (``containers.follow``), which keeps filling while the
supervisor is away. Exit is the engine's ``wait``; ``inspect`` tells an OOM kill apart. Stop is
the signal (``kill --signal``), the grace period, then ``kill`` of the whole container, then
``rm``. Re-adoption finds the container by its labels, so a restarted supervisor — or a second
``start`` of the same instance with the same spec — attaches to what runs instead of starting a
duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal as _signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from corral.containers import build as builds
from corral.containers import engine as engines
from corral.containers import runargs
from corral.containers.follow import Cursor, Follower
from corral.containers.oom import OomWatch, usage
from corral.containers.runargs import container_name
from corral.drivers.base import (
    Capabilities,
    Driver,
    DriverHealth,
    ExitResult,
    Handle,
    Output,
    ResourceUsage,
    Task,
)
from corral.errors import CorralError, DriverError


@dataclass(frozen=True, slots=True)
class ContainerOptions:
    """The manifest's ``container:`` block. ``image``: run this local image as is; else build
    from ``build`` (a dir relative to the workdir, default the workdir) with ``file`` (default:
    its Containerfile/Dockerfile, else generated on ``base``)."""

    engine: str = "auto"
    image: str | None = None
    build: str | None = None
    file: str | None = None
    base: str | None = None
    ports: tuple[str, ...] = field(default_factory=tuple)


def container_options(task: Task) -> ContainerOptions:
    """Read ``task.spec.container`` as a mapping or an object (a pydantic model or a
    dataclass), so the manifest can define it either way."""
    raw: Any = getattr(task.spec, "container", None)
    if raw is None:
        return ContainerOptions()
    get = raw.get if isinstance(raw, Mapping) else (lambda k, d=None: getattr(raw, k, d))
    return ContainerOptions(
        engine=get("engine", "auto") or "auto", image=get("image", None),
        build=get("build", None), file=get("file", None), base=get("base", None),
        ports=tuple(str(p) for p in (get("ports", None) or ())))


def spec_hash(task: Task, image: str) -> str:
    """The spec and the image it runs: a running container is adopted by a new ``start`` only
    when both are what this start would create (a rebuilt image means a new container)."""
    dump = getattr(task.spec, "model_dump_json", None)
    text = (dump() if dump is not None else repr(task.spec)) + "\0" + image
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Watch:
    __slots__ = ("exit", "follower", "oom", "waiter")

    def __init__(self, exit: asyncio.Future[ExitResult], follower: Follower) -> None:
        self.exit = exit
        self.follower = follower
        self.oom = OomWatch()
        self.waiter: asyncio.Task[None] | None = None


class ContainerDriver(Driver):
    name: ClassVar[str] = "container"
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="container", recover=True, stats=True, signals=True, exec_inside=True)

    def __init__(self, engine: engines.Engine | None = None) -> None:
        self._engine = engine  # injected (tests, `--engine`), else chosen per agent
        self._images: dict[str, str] = {}  # inputs digest -> image tag
        self._watches: dict[str, _Watch] = {}
        self._networks: set[tuple[str, str]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._commands: set[tuple[str, str, str]] = set()  # (engine, image, argv0) found
        self._pids: dict[str, int] = {}  # instance -> the container's init pid on the host

    # --- engine and image -----------------------------------------------------------------

    def engine_for(self, task: Task) -> engines.Engine:
        if self._engine is not None:
            return self._engine
        try:
            return engines.find(container_options(task).engine)
        except CorralError as exc:
            raise DriverError(f"agents.{task.agent}: {exc.problem}", exc.fix) from None

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
        opts = container_options(task)
        venv = task.spec.venv
        try:
            return builds.recipe(
                task.workdir, build=opts.build, file=opts.file, base=opts.base,
                requirements=venv.requirements if venv else None,
                pyproject=venv.pyproject if venv else None,
                packages=tuple(venv.packages) if venv else ())
        except CorralError as exc:
            raise DriverError(f"agents.{task.agent}: {exc.problem}", exc.fix) from None

    def inputs_digest(self, task: Task) -> str:
        opts = container_options(task)
        if opts.image is not None:
            return f"image:{opts.image}"
        return "build:" + builds.digest(self._recipe(task))

    async def prepare(self, task: Task, progress: Output | None = None) -> None:
        await self.image(task, progress)

    async def image(self, task: Task, progress: Output | None = None) -> str:
        """The agent's image, built when needed (``corral build`` calls this too)."""
        eng = self.engine_for(task)
        opts = container_options(task)
        if opts.image is not None:
            if not await eng.image_exists(opts.image):
                raise DriverError(
                    f"agents.{task.agent}: image {opts.image} does not exist in {eng.name}",
                    f"build or load it ({eng.name} images lists what exists), or drop "
                    "container.image to build from the agent's directory")
            return opts.image
        key = self.inputs_digest(task)
        if key in self._images:
            return self._images[key]
        async with self._locks.setdefault(key, asyncio.Lock()):
            if key not in self._images:
                r = self._recipe(task)
                tag = builds.tag_for(task.project, task.agent, key.partition(":")[2])
                say = None if progress is None else (
                    lambda line: progress.feed("stdout", (line + "\n").encode()))
                try:
                    self._images[key] = await builds.build(
                        eng, r, tag, staging_root=os.path.join(task.cache_dir, "builds"),
                        progress=say)
                except CorralError as exc:
                    raise DriverError(f"agents.{task.agent}: {exc.problem}", exc.fix) from None
        return self._images[key]

    # --- start ----------------------------------------------------------------------------

    def _labels(self, task: Task, image: str) -> dict[str, str]:
        return {"corral.project": task.project, "corral.agent": task.agent,
                "corral.instance": task.instance, "corral.spec-hash": spec_hash(task, image)}

    async def start(self, task: Task, output: Output) -> Handle:
        eng = self.engine_for(task)
        image = await self.image(task)
        name = container_name(task.project, task.instance)
        labels = self._labels(task, image)
        os.makedirs(task.run_dir, mode=0o700, exist_ok=True)
        cursor_path = os.path.join(task.run_dir, "logs.cursor")
        data = {"engine": eng.name, "binary": eng.binary, "name": name,
                "cursor": cursor_path, "project": task.project}
        # independent engine calls at once: a start is mostly waiting for the engine
        existing, net_args, mount_args, _ = await asyncio.gather(
            eng.containers({"corral.project": task.project, "corral.instance": task.instance}),
            runargs.network(eng, task, self._networks), runargs.mounts(eng, task),
            self._command_exists(eng, image, task))
        for found in existing:
            same = labels["corral.spec-hash"] == await self._label(eng, found["id"],
                                                                    "corral.spec-hash")
            if found["state"] == "running" and same:  # already ours: adopt, never duplicate
                handle = Handle(self.name, task.instance, None, time.time(),
                                data={**data, "container": found["id"]})
                if await self.recover(handle, output):
                    return replace(handle, pid=self._pids.get(task.instance))
            await eng.remove(found["id"])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(cursor_path)  # a fresh container: its log starts empty
        env_args, cli_env = runargs.env(task)
        argv = ["run", "-d", "--name", name, "--init"]
        for key, value in labels.items():
            argv += ["--label", f"{key}={value}"]
        argv += runargs.limits(task) + net_args + mount_args
        argv += runargs.ports(container_options(task).ports) + env_args
        if eng.name == "docker":
            argv += ["--pull", "never"]
        argv += [image, *task.spec.argv]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(task.run_dir, "oom"))
        # Podman's conmon inherits this cwd and drops an "oom" file into it when the kernel
        # OOM-kills in the container: here it lands in the instance's run dir, not in
        # whatever dir the supervisor was started from, and tells an OOM kill apart too.
        got = await eng.run(*argv, env=cli_env, cwd=task.run_dir)
        if not got.ok:
            await eng.remove(name)  # created but not started: leave nothing behind
            raise DriverError(f"agents.{task.agent}: {eng.name} could not start the container: "
                              f"{got.error_line()}", "fix the agent's command or container "
                              "block; `corral doctor` checks the engine")
        cid = got.out.decode().strip().splitlines()[-1]
        handle = Handle(self.name, task.instance, None, time.time(),
                        data={**data, "container": cid})
        await self._attach(eng, handle, output)
        return replace(handle, pid=self._pids.get(task.instance))

    async def _command_exists(self, eng: engines.Engine, image: str, task: Task) -> None:
        """With ``--init`` a missing command is only the init's exit 127 after a successful
        ``run``: look it up in the image first (once per image and command, then cached), so it
        is the same clear start error as at every other level."""
        exe = task.spec.argv[0]
        if (eng.name, image, exe) in self._commands:
            return
        got = await eng.run("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh",
                            image, "-c", 'command -v "$0" >/dev/null || exit 42', exe)
        if got.code == 42:
            raise DriverError(f"agents.{task.agent}: command not found: {exe} (in image {image})",
                              f"install it in the image or fix agents.{task.agent}.command")
        self._commands.add((eng.name, image, exe))  # found, or no shell to ask: run will tell

    @staticmethod
    async def _label(eng: engines.Engine, cid: str, key: str) -> str:
        got = await eng.run("inspect", "--format", f'{{{{index .Config.Labels "{key}"}}}}', cid)
        return got.out.decode().strip() if got.ok else ""

    # --- output, exit ---------------------------------------------------------------------

    async def _attach(self, eng: engines.Engine, handle: Handle, output: Output) -> None:
        follower = Follower(eng, handle.data["container"], output,
                            Cursor(handle.data["cursor"]))
        watch = _Watch(asyncio.get_running_loop().create_future(), follower)
        pid, _ = await asyncio.gather(
            eng.json("inspect", "--format", "{{json .State.Pid}}", handle.data["container"]),
            follower.start())
        if isinstance(pid, int) and pid > 0:  # the agent's init, as the host sees it
            self._pids[handle.instance] = pid
            watch.oom.watch(pid)
        self._watches[handle.instance] = watch
        watch.waiter = asyncio.ensure_future(self._wait_exit(eng, handle, watch))

    async def _wait_exit(self, eng: engines.Engine, handle: Handle, watch: _Watch) -> None:
        cid = handle.data["container"]
        try:
            got = await eng.run("wait", cid)
            state = await eng.json("inspect", "--format", "{{json .State}}", cid)
            await watch.follower.finish()
            watch.oom.settle()
            marker = os.path.join(os.path.dirname(handle.data["cursor"]), "oom")
            oom = watch.oom.killed or os.path.exists(marker)
            result = _result(got, state if isinstance(state, dict) else {}, oom)
            await eng.remove(cid)
        except Exception as exc:  # the result must always arrive, or wait() hangs
            result = ExitResult(code=None, error=f"lost the container: {exc}")
        finally:
            watch.oom.close()
        if not watch.exit.done():
            watch.exit.set_result(result)

    async def wait(self, handle: Handle) -> ExitResult:
        watch = self._watches.get(handle.instance)
        if watch is None:
            return ExitResult(code=None, error="not started by this driver")
        result = await asyncio.shield(watch.exit)
        if self._watches.get(handle.instance) is watch:
            del self._watches[handle.instance]
        return result

    async def stop(self, handle: Handle, *, sig: int, timeout: float) -> None:
        eng = self._engine_of(handle)
        cid = handle.data["container"]
        watch = self._watches.get(handle.instance)
        if watch is not None and watch.exit.done():
            return
        await eng.run("kill", "--signal", _signal.Signals(sig).name, cid)
        if watch is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(watch.exit), timeout)
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await eng.run("wait", cid, timeout=timeout)
        if watch is None or not watch.exit.done():
            # the grace period is over: the whole container (its PID namespace) goes
            await eng.run("kill", "--signal", "SIGKILL", cid)
        if watch is not None:
            await asyncio.shield(watch.exit)
        else:
            await eng.remove(cid)

    async def recover(self, handle: Handle, output: Output) -> bool:
        eng = self._engine_of(handle)
        found = await eng.containers({"corral.project": handle.data.get("project", ""),
                                      "corral.instance": handle.instance})
        running = [c for c in found if c["state"] == "running"
                   and handle.data.get("container") in (c["id"], c["name"])]
        if not running:
            for c in found:  # exited while the supervisor was away
                if handle.data.get("container") in (c["id"], c["name"]):
                    await self._drain(eng, handle, output)  # its last lines still count
                await eng.remove(c["id"])
            return False
        await self._attach(eng, handle, output)
        return True

    @staticmethod
    async def _drain(eng: engines.Engine, handle: Handle, output: Output) -> None:
        """What an exited container printed after the cursor (``logs`` ends at once)."""
        follower = Follower(eng, handle.data["container"], output,
                            Cursor(handle.data["cursor"]))
        await follower.start()
        await follower.finish()

    async def stats(self, handle: Handle) -> ResourceUsage | None:
        eng = self._engine_of(handle)
        pid = await eng.json("inspect", "--format", "{{json .State.Pid}}",
                             handle.data["container"])
        if not isinstance(pid, int) or pid <= 0:
            return None
        return usage(pid)

    async def exec(self, task: Task, argv: list[str]) -> list[str]:
        eng = self.engine_for(task)
        return eng.argv("exec", "-i", container_name(task.project, task.instance), *argv)


def _result(waited: engines.Result, state: dict[str, Any], oom: bool) -> ExitResult:
    """The engine's exit code; 128+N means signal N (what ``--init`` reports for a signalled
    agent, and what the engines themselves report for a killed container)."""
    try:
        code = int(waited.out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        code = int(state.get("ExitCode", -1))
    if state.get("OOMKilled") or (oom and code == 128 + _signal.SIGKILL):
        return ExitResult(code=code, signal=_signal.SIGKILL, oom_killed=True)
    if 128 < code < 128 + 65:
        return ExitResult(code=code, signal=code - 128)
    return ExitResult(code=code)
