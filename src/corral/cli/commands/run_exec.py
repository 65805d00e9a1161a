"""``corral run`` and ``corral exec``: one agent's command (or another) attached to this
terminal, its exit code ours. Nothing here names an isolation level: the agent's driver says
how (``Driver.foreground``: a host process, our child; else ``start`` and ``wait`` through the
driver, attached; ``Driver.enter``: inside a running instance). The task is the one every
instance gets (``runtime.tasks.build_task``), so a one-off runs with the daemon's environment
(clean: no credential of this shell's unless the agent declares it)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable

from corral.cli import daemonctl, project
from corral.errors import CorralError, NotFound, UsageError

TYPE_CHECKING = False  # not typing's: every command pays for what a module imports
if TYPE_CHECKING:
    from typing import Any

    from corral.drivers.base import Driver, Launch, Task


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("run", help="run one agent once, attached; its exit code is ours")
    s.add_argument("agent")
    s.add_argument("args", nargs=argparse.REMAINDER, metavar="-- ARGS",
                   help="run these instead of the agent's command (as compose's run)")
    s.set_defaults(handler=cmd_run)
    s = sub.add_parser("exec", help="run a command in an agent's environment")
    s.add_argument("agent")
    s.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")
    s.set_defaults(handler=cmd_exec)


def _agent(args: argparse.Namespace) -> tuple[Any, Any]:

    manifest = project.load(args.file)
    if args.agent not in manifest.agents:
        from corral.manifest.hints import did_you_mean

        raise NotFound(f"no agent named {args.agent!r}{did_you_mean(args.agent, manifest.agents)}",
                       "see 'corral config' for the agents")
    return manifest, manifest.agents[args.agent]


def one_off_task(manifest: Any, agent: str, instance: str, *, secrets: bool = True) -> Any:
    """The task of a one-off instance (``corral run``: AGENT.run, ``exec``: AGENT.exec), its
    environment built as the daemon builds an instance's (``corral.environ``), from this
    shell's, with the agent's secrets (``secrets=False``: without, for a command that runs in
    what runs already)."""
    from corral import environ
    from corral.drivers.host import walls
    from corral.manifest import peers
    from corral.paths import StateLayout
    from corral.runtime.tasks import build_task

    spec = manifest.agents[agent]
    env = environ.agent_environment(
        spec, project=manifest.name, name=agent, state_dir=manifest.state_dir,
        base=os.environ, given=os.environ, inherit=environ.patterns(manifest, spec),
        withheld=environ.sources(manifest), terminal=True,
        peers=peers.environment(manifest.agents, agent))
    task = build_task(project=manifest.name, project_dir=manifest.project_dir, agent=agent,
                      spec=spec, instance=instance, index=0, env=env,
                      hosts=peers.hosts(manifest.agents, agent),
                      layout=StateLayout(manifest.state_dir),
                      masked=walls.masked_files(manifest))
    return with_secrets(manifest, task) if secrets and spec.secrets else task


def with_secrets(manifest: Any, task: Any) -> Any:
    """``task`` with its agent's secrets, read from this shell (files on the tmpfs, removed by
    ``forget_secrets`` when the one-off ends)."""
    import asyncio

    from corral.runtime.keeper import SecretKeeper
    from corral.secrets import SecretError

    keeper = SecretKeeper(manifest.state_dir, manifest.name, lambda *_: None)
    try:
        return asyncio.run(keeper.task_with_secrets(task, manifest.secrets, os.environ))
    except SecretError as exc:
        raise CorralError(str(exc)) from None  # the message ends with its fix


def forget_secrets(task: Any) -> None:
    """A one-off's secret files go when it ends: they were written for it alone (the daemon's
    instances have dirs of their own, removed with the fleet), and would else stay on the
    tmpfs until the host reboots. Its fleet's dir goes too once nothing else is in it."""
    from corral.secrets import remove_files

    directory = task.env.get("CORRAL_SECRETS_DIR")
    if not directory or os.path.basename(directory) != task.instance:
        return
    remove_files(directory)
    with contextlib.suppress(OSError):  # ENOTEMPTY: the daemon's instances use it
        os.rmdir(os.path.dirname(directory))


def _driver(spec: Any) -> Driver:
    from corral.drivers import registry

    return registry.load(spec.driver)().one_off()


class _StderrProgress:
    """What ``prepare`` says (a venv's or an image's build), to stderr as it comes."""

    def feed(self, stream: str, data: bytes) -> None:
        sys.stderr.buffer.write(data)
        sys.stderr.flush()

    def eof(self, stream: str) -> None:
        pass


async def _attached(driver: Driver, task: Task) -> int:
    """A one-off through its driver's own start and wait (its command exists only inside
    what the driver starts: a container, a guest), its output to this terminal as the agent
    wrote it; a cancel (Ctrl-C) stops it with the agent's stop signal and grace period."""
    import asyncio
    import signal

    from corral.cli.render import Attached

    stop = task.spec.stop
    handle = await driver.start(task, Attached())
    try:
        result = await driver.wait(handle)
    except asyncio.CancelledError:
        await driver.stop(handle, sig=signal.Signals[stop.signal], timeout=stop.timeout)
        raise
    if result.error or result.oom_killed:
        print(f"corral: {task.agent}: {result.describe()}", file=sys.stderr)
    return result.code if result.code is not None else 1


def _waited(launch: Launch, *, interrupt: bool) -> int:
    """``launch`` as our child, waited for (its one-off secret files go once it ended); on
    Ctrl-C, which reached it too, terminated (``interrupt``) or waited for still."""
    import subprocess

    proc = subprocess.Popen(launch.argv, cwd=launch.cwd, env=launch.env, pass_fds=launch.fds)
    for fd in launch.fds:
        os.close(fd)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        if interrupt:
            proc.terminate()
        code = proc.wait()
    return code if code >= 0 else 128 - code


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    manifest, spec = _agent(args)
    if spec.depends_on:
        client = daemonctl.client(manifest.state_dir)
        if not client.alive():
            raise CorralError(f"agent {args.agent} depends on {', '.join(spec.depends_on)}, "
                              "which are not running", "start them first with 'corral up -d'")
    extra = args.args[1:] if args.args[:1] == ["--"] else args.args
    if extra:  # the whole command, as compose's run; before its driver wraps it (bwrap...)
        manifest.agents[args.agent] = spec = dataclasses.replace(spec, command=list(extra),
                                                                 shell=False)
    driver = _driver(spec)
    task = one_off_task(manifest, args.agent, f"{args.agent}.run")

    async def go() -> Launch | int:
        await driver.prepare(task, _StderrProgress())
        launch = driver.foreground(task)
        return launch if launch is not None else await _attached(driver, task)

    try:
        got = asyncio.run(go())
        return got if isinstance(got, int) else _waited(got, interrupt=True)
    except KeyboardInterrupt:
        return 130
    finally:
        forget_secrets(task)


def _running(file: str | None, agent: str) -> Callable[[], list[int]]:
    """The pids of ``agent``'s running instances, asked of the daemon when a driver needs
    them (``Driver.enter``)."""
    return lambda: [pid for _, pid in _instances(file, agent)]


def _instances(file: str | None, agent: str) -> list[tuple[str, int]]:
    """``agent``'s running instances (name, pid), from its daemon; none without one."""
    try:
        rows = daemonctl.client(project.state_dir(file)).instances()
    except CorralError:
        return []
    return [(r["name"], r["pid"]) for r in rows
            if r["agent"] == agent and r["state"] == "running" and r.get("pid")]


def cmd_exec(args: argparse.Namespace) -> int:
    import asyncio
    manifest, spec = _agent(args)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise UsageError("no command given", f"write: corral exec {args.agent} -- CMD ARGS")
    driver = _driver(spec)
    bare = one_off_task(manifest, args.agent, f"{args.agent}.exec", secrets=False)
    inside = asyncio.run(driver.enter(bare, cmd, _running(args.file, args.agent)))
    if inside is not None and not inside.agent_env:  # corral's own env: the engine's CLI
        os.execv(inside.argv[0], inside.argv)  # gives the command the instance's own
    task = _exec_secrets(manifest, bare, _instances(args.file, args.agent))
    try:
        launch = _in_environment(driver, task, None if inside is not None else cmd)
        if inside is not None:  # inside, /run/secrets is the running instance's
            forget_secrets(task)
            assert launch.env is not None
            os.execve(inside.argv[0], inside.argv, dict(launch.env))
        try:  # waited for, not exec'd: its secret files are removed once it ends
            return _waited(launch, interrupt=False)
        except OSError as exc:
            raise CorralError(f"cannot run {cmd[0]}: {exc.strerror}",
                              "check the command and the agent's PATH") from None
    finally:
        forget_secrets(task)


def _exec_secrets(manifest: Any, task: Task, running: list[tuple[str, int]]) -> Task:
    """``task`` with the agent's secrets as its running instance has them (the daemon read
    them at ``up``, from that shell: this one may not have them): its secret variables, and
    its secret files' dir (which exec does not remove); with none running, read from this
    shell as ``run`` reads them."""
    import dataclasses

    uses = task.spec.secrets
    if not uses:
        return task
    names = {u.env for u in uses if u.env is not None}
    files = any(u.env is None for u in uses)
    for instance, pid in running:
        found = _environ_of(pid)
        if found is None or not names <= found.keys():
            continue
        env = {**task.env, **{n: found[n] for n in names}}
        if files:
            directory = _secrets_dir(manifest, instance, found.get("CORRAL_SECRETS_DIR", ""))
            if directory is None:
                continue
            env["CORRAL_SECRETS_DIR"] = directory
        return dataclasses.replace(task, env=env)
    read: Task = with_secrets(manifest, task)
    return read


def _secrets_dir(manifest: Any, instance: str, given: str) -> str | None:
    """The host dir of a running instance's secret files: the one its environment names
    (a host process), else the keeper's for it (walls show it at a path of their own)."""
    from corral.runtime.keeper import SecretKeeper

    if os.path.basename(given) != instance:
        given = SecretKeeper(manifest.state_dir, manifest.name, lambda *_: None
                             ).directory(instance)
    return given if os.path.isdir(given) else None


def _environ_of(pid: int) -> dict[str, str] | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:  # gone, or another user's
        return None
    pairs = (item.decode("utf-8", "surrogateescape").partition("=")
             for item in raw.split(b"\0") if item)
    return {k: v for k, sep, v in pairs if sep}


def _in_environment(driver: Driver, task: Task, argv: list[str] | None) -> Launch:
    """The agent's environment from its prepared driver (``foreground``): the launch of
    ``argv`` in it, or (None) of the agent's own command, whose descriptors are not needed."""
    import asyncio

    asyncio.run(driver.prepare(task, _StderrProgress()))
    launch = driver.foreground(task, argv)
    if launch is None:
        raise CorralError(f"corral exec cannot run a command for agent {task.agent}: its "
                          f"level ({task.spec.isolation}) has no way in",
                          f"run it in an instance of its own: corral run {task.agent} -- ARGS")
    if argv is None:
        for fd in launch.fds:
            os.close(fd)
    return launch
