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
import re
import signal as _signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from corral.containers import build as builds
from corral.containers import engine as engines
from corral.containers.follow import Cursor, Follower
from corral.containers.oom import OomWatch
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

SECRETS_IN_CONTAINER = "/run/secrets"
DATA_IN_CONTAINER = "/var/lib/corral/data"  # the agent's CORRAL_STATE_DIR, kept on the host
# Host settings that mean nothing inside an image (its own PATH comes from the image); kept
# when the agent's own env sets them.
_HOST_ONLY = {"PATH", "HOME", "PWD", "OLDPWD", "SHLVL", "TMPDIR", "VIRTUAL_ENV", "PYTHONHOME",
              "PYTHONPATH", "LD_LIBRARY_PATH", "LD_PRELOAD", "PYENV_ROOT", "PYENV_VERSION"}
_NAME = re.compile(r"[^a-zA-Z0-9_.-]+")


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


def _name(*parts: str) -> str:
    return _NAME.sub("-", "-".join(parts)).strip("-.")


def network_name(project: str) -> str:
    return _name("corral", project)


def volume_name(project: str, volume: str) -> str:
    return _name("corral", project, volume)


def container_name(project: str, instance: str) -> str:
    return _name("corral", project, instance)


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
        isolation="container", recover=True, stats=True, signals=True)

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

    async def _network(self, eng: engines.Engine, task: Task) -> list[str]:
        mode = task.spec.network
        if mode in ("none", "host"):
            return ["--network", mode]
        net = network_name(task.project)
        if (eng.name, net) not in self._networks:
            if not (await eng.run("network", "inspect", net)).ok:
                got = await eng.run("network", "create", "--label",
                                    f"corral.project={task.project}", net)
                if not got.ok and "exists" not in got.error_line():
                    raise DriverError(f"agents.{task.agent}: cannot create network {net}: "
                                      f"{eng.name} says: {got.error_line()}",
                                      "run `corral doctor`")
            self._networks.add((eng.name, net))
        return ["--network", net, "--network-alias", task.agent]

    async def _mounts(self, eng: engines.Engine, task: Task) -> list[str]:
        args: list[str] = []
        for v in task.spec.volumes:
            ro = ":ro" if v.read_only else ""
            if v.named:
                name = volume_name(task.project, os.path.basename(v.source))
                await self._volume(eng, name, task)
                args += ["-v", f"{name}:{v.target}{ro}"]
                continue
            if not os.path.exists(v.source):
                raise DriverError(f"agents.{task.agent}.volumes: {v.source} does not exist",
                                  "create it, or use a named volume (NAME:/target)")
            args += ["-v", f"{v.source}:{v.target}{ro}"]
        secrets = task.env.get("CORRAL_SECRETS_DIR")
        if secrets:
            args += ["-v", f"{secrets}:{SECRETS_IN_CONTAINER}:ro"]
        data = task.env.get("CORRAL_STATE_DIR")
        if data:
            os.makedirs(data, exist_ok=True)
            args += ["-v", f"{data}:{DATA_IN_CONTAINER}"]
        return args

    @staticmethod
    async def _volume(eng: engines.Engine, name: str, task: Task) -> None:
        """Created here rather than implicitly by ``run -v``: the label lets ``corral down
        --volumes`` find exactly this project's volumes (a name prefix would also match a
        project whose name extends this one's)."""
        if (await eng.run("volume", "inspect", name)).ok:
            return
        got = await eng.run("volume", "create", "--label", f"corral.project={task.project}",
                            name)
        if not got.ok and "exists" not in got.error_line():
            raise DriverError(f"agents.{task.agent}: cannot create volume {name}: "
                              f"{eng.name} says: {got.error_line()}", "run `corral doctor`")
    def _limits(self, task: Task) -> list[str]:
        res = task.spec.resources
        args: list[str] = []
        if res.cpus is not None:
            args += ["--cpus", f"{res.cpus:g}"]
        if res.memory is not None:  # swap equal to memory: no swap, so the limit OOM-kills
            args += ["--memory", str(res.memory), "--memory-swap", str(res.memory)]
        if res.memory_reservation is not None:
            args += ["--memory-reservation", str(res.memory_reservation)]
        if res.pids is not None:
            args += ["--pids-limit", str(res.pids)]
        return args

    @staticmethod
    def _ports(opts: ContainerOptions) -> list[str]:
        args: list[str] = []
        for port in opts.ports:  # HOST:CONTAINER binds to loopback unless an address is given
            args += ["-p", port if port.count(":") >= 2 else f"127.0.0.1:{port}"]
        return args

    def _env(self, task: Task) -> tuple[list[str], dict[str, str]]:
        own = task.spec.env
        inner = {k: v for k, v in task.env.items() if k not in _HOST_ONLY or k in own}
        if inner.get("CORRAL_SECRETS_DIR"):
            inner["CORRAL_SECRETS_DIR"] = SECRETS_IN_CONTAINER
        if inner.get("CORRAL_STATE_DIR"):
            inner["CORRAL_STATE_DIR"] = DATA_IN_CONTAINER
        cli_env = {**inner, "PATH": os.environ.get("PATH", os.defpath),
                   "HOME": os.environ.get("HOME", "/root")}
        for key in ("XDG_RUNTIME_DIR", "DOCKER_HOST", "CONTAINER_HOST", "CONTAINERS_CONF"):
            if key in os.environ and key not in inner:
                cli_env[key] = os.environ[key]
        args: list[str] = []
        for key in sorted(inner):
            args += ["-e", key]
        return args, cli_env

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
            self._network(eng, task), self._mounts(eng, task),
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
        env_args, cli_env = self._env(task)
        argv = ["run", "-d", "--name", name, "--init"]
        for key, value in labels.items():
            argv += ["--label", f"{key}={value}"]
        argv += self._limits(task) + net_args + mount_args
        argv += self._ports(container_options(task)) + env_args
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
        return _cgroup_usage(pid)

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


def _cgroup_usage(pid: int) -> ResourceUsage | None:
    """The container's own cgroup, as the kernel counts it (v1 or v2)."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    paths: dict[str, str] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            paths[c] = path

    def read(*candidates: str) -> str | None:
        for cand in candidates:
            with contextlib.suppress(OSError), open(cand) as fh:
                return fh.read()
        return None

    base = "/sys/fs/cgroup"
    v2 = paths.get("", "")
    mem = read(f"{base}/memory{paths.get('memory', '')}/memory.usage_in_bytes",
               f"{base}{v2}/memory.current")
    cpu = read(f"{base}/cpuacct{paths.get('cpuacct', '')}/cpuacct.usage",
               f"{base}/cpu,cpuacct{paths.get('cpuacct', '')}/cpuacct.usage")
    cpu_seconds = int(cpu) / 1e9 if cpu else 0.0
    if cpu is None:
        stat = read(f"{base}{v2}/cpu.stat") or ""
        usec = next((ln.split()[1] for ln in stat.splitlines() if ln.startswith("usage_usec")),
                    "0")
        cpu_seconds = int(usec) / 1e6
    pids = read(f"{base}/pids{paths.get('pids', '')}/pids.current",
                f"{base}{v2}/pids.current")
    return ResourceUsage(cpu_seconds=cpu_seconds, rss_bytes=int(mem) if mem else 0,
                         processes=int(pids) if pids else 1)
