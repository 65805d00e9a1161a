"""Commands that work without the daemon: init, config, schema, doctor, run, exec."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
from typing import Any

from corral.cli import daemonctl, project
from corral.errors import CorralError, NotFound

_STARTER = {
    "service": """\
  cache:
    class: service            # restarted always; dependents can wait for it to be healthy
    command: python3 -m http.server 8765 --bind 127.0.0.1
    readiness:
      tcp: 8765
      period: 1s
""",
    "io": """\
  fetcher:
    class: io                 # restarted with backoff; keeps its state dir between runs
    command: >-
      python3 -c "import itertools, time;
      [print('fetched', i, flush=True) or time.sleep(2) for i in itertools.count()]"
    depends_on:
      cache: {condition: healthy}
""",
    "compute": """\
  report:
    class: compute            # runs to completion; its exit code is the result
    command: python3 -c "print('computed 42')"
""",
    "ai": """\
  assistant:
    class: ai                 # long stateful runs; give it the strongest isolation you have
    command: python3 -c "import time; print('thinking', flush=True); time.sleep(3600)"
""",
}


def cmd_init(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.file or "corral.yaml")
    if os.path.exists(path) and not args.force:
        raise CorralError(f"{path} already exists", "use --force to overwrite it")
    classes = args.classes or ["service", "io", "compute", "ai"]
    if "io" in classes and "service" not in classes:
        classes = ["service", *classes]
    name = os.path.basename(os.path.dirname(path)).lower() or "fleet"
    name = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name).strip("-_")
    text = (f"# corral manifest: 'corral up' runs it, 'corral config' shows every default.\n"
            f"name: {name or 'fleet'}\nagents:\n")
    text += "".join(_STARTER[c] for c in ("service", "io", "compute", "ai") if c in classes)
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path}: edit it, then run 'corral up'")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from corral.manifest.loader import load
    from corral.manifest.schema import dump

    sys.stdout.write(dump(load(project.manifest_path(args.file))))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from corral.manifest.schema import json_schema

    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from corral.advice.doctor import report

    rows = asyncio.run(report())
    ok = True
    for level, available, detail, fix in rows:
        mark = "ok " if available else "-- "
        print(f"{mark}{level:<10} {detail}")
        if not available and fix:
            print(f"   {'':<10} fix: {fix}")
        ok = ok and (available or level not in ("process", "venv"))
    for warning in _credential_warnings(args.file):
        print(f"!! {'secrets':<10} {warning}")
    return 0 if ok else 1


def _credential_warnings(file: str | None) -> list[str]:
    """Least privilege (M10): .env files the manifest reads that git would commit, secret
    files others can read, long-lived cloud admin keys in the environment."""
    from corral.secrets import cloud_key_warnings, git_ignored, world_readable

    out = [f"{w}; corral keeps it from agents unless one declares it"
           for w in cloud_key_warnings(os.environ)]
    try:
        from corral.manifest.loader import load

        manifest = load(project.manifest_path(file))
    except CorralError:
        return out  # no manifest here (or a broken one: `corral config` says why)
    envs = {os.path.join(manifest.project_dir, ".env")}
    envs |= {e.path for a in manifest.agents.values() for e in a.env_file}
    envs |= {s.env_file for s in manifest.secrets.values() if s.env_file}
    for path in sorted(p for p in envs if os.path.isfile(p)):
        if git_ignored(path) is False:
            out.append(f"{path} is not git-ignored: a commit would publish it "
                       f"(add {os.path.basename(path)} to .gitignore)")
        if world_readable(path):
            out.append(f"{path} is readable by every user (chmod 600 {path})")
    for name, source in manifest.secrets.items():
        if source.file and world_readable(source.file):
            out.append(f"secret {name}: {source.file} is readable by every user "
                       f"(chmod 600 {source.file})")
    return out


def _agent(args: argparse.Namespace) -> tuple[Any, Any]:
    from corral.manifest.loader import load

    manifest = load(project.manifest_path(args.file))
    if args.agent not in manifest.agents:
        from corral.manifest.hints import did_you_mean

        raise NotFound(f"no agent named {args.agent!r}{did_you_mean(args.agent, manifest.agents)}",
                       "see 'corral config' for the agents")
    return manifest, manifest.agents[args.agent]


def one_off_task(manifest: Any, agent: str, instance: str) -> Any:
    """The task of a one-off instance (``corral run``: AGENT.run, ``exec``: AGENT.exec), its
    environment built as the daemon builds an instance's (``corral.environ``), from this
    shell's, with the agent's secrets."""
    from corral import environ
    from corral.drivers.host import walls
    from corral.paths import StateLayout
    from corral.runtime.tasks import build_task

    spec = manifest.agents[agent]
    env = environ.agent_environment(
        spec, project=manifest.name, name=agent, state_dir=manifest.state_dir,
        base=os.environ, given=os.environ, inherit=environ.patterns(manifest, spec),
        withheld=environ.sources(manifest), terminal=True)
    task = build_task(project=manifest.name, project_dir=manifest.project_dir, agent=agent,
                      spec=spec.to_spec(), instance=instance, index=0, env=env,
                      layout=StateLayout(manifest.state_dir),
                      masked=walls.masked_files(manifest))
    if not spec.secrets:
        return task
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


def run_attached(driver: Any, task: Any, progress: Any) -> int:
    """A one-off run through its driver's own prepare, start and wait (the container and vm
    levels: their command lines exist only for what the driver started), its output to this
    terminal and its exit code ours; Ctrl-C stops it with the agent's stop signal and grace
    period. Its one-off secret files go with it."""
    import signal

    from corral.cli.output import Attached

    stop = task.spec.stop

    async def go() -> int:
        await driver.prepare(task, progress)
        handle = await driver.start(task, Attached())
        try:
            result = await driver.wait(handle)
        except asyncio.CancelledError:
            await driver.stop(handle, sig=signal.Signals[stop.signal], timeout=stop.timeout)
            raise
        if result.error or result.oom_killed:
            print(f"corral: {task.agent}: {result.describe()}", file=sys.stderr)
        return result.code if result.code is not None else 1

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        return 130
    finally:
        forget_secrets(task)


_one_offs: list[Any] = []


def _forget_all() -> None:
    while _one_offs:
        forget_secrets(_one_offs.pop())


def _environment(manifest: Any, agent: str, instance: str = "run",
                 fds: list[int] | None = None) -> tuple[dict[str, str], str, list[str]]:
    """The agent's environment, workdir and argv, as its driver would give them. ``fds``:
    gets the descriptors the argv names (a sandbox's checked binds), for the child to
    inherit; without it they are closed here."""
    from corral.drivers import registry

    spec = manifest.agents[agent]
    task = one_off_task(manifest, agent, f"{agent}.{instance}")
    _one_offs.append(task)  # their secret files go when the command ends (forget_secrets)
    env = dict(task.env)
    driver = registry.load(spec.isolation)()
    asyncio.run(driver.prepare(task, _StderrProgress()))
    os.makedirs(env["CORRAL_STATE_DIR"], exist_ok=True)  # before a sandbox's argv opens it
    env_of = getattr(driver, "environment", None)
    argv_of = getattr(driver, "argv", None)
    full_env = env_of(task) if env_of else env
    argv = argv_of(task) if argv_of else spec.argv
    passed = driver.passed_fds(task) if hasattr(driver, "passed_fds") else []
    if fds is None:
        for fd in passed:
            os.close(fd)
    else:
        fds += passed
    os.makedirs(full_env["CORRAL_STATE_DIR"], exist_ok=True)
    ident = driver.identity(task) if hasattr(driver, "identity") else None
    if ident is not None:  # what it writes is its own, as under the daemon (ownership.identity)
        exe = shutil.which(argv[0], path=full_env.get("PATH")) or argv[0]
        driver.hand_over(task, ident, exe)  # type: ignore[attr-defined]
    return full_env, spec.workdir, argv


def _as_agent(manifest: Any, agent: str) -> list[str]:
    """The prefix that runs a process or venv agent's command as its ``user:`` (a sandbox's
    argv switches inside itself); [] for one that runs as corral."""
    from corral.ownership import identity

    spec = manifest.agents[agent]
    if spec.isolation not in ("process", "venv"):
        return []
    ident = identity.of(agent, spec.isolation, spec.user, manifest.state_dir)
    return identity.switch(ident, sandboxed=False) if ident else []


class _StderrProgress:
    def feed(self, stream: str, data: bytes) -> None:
        sys.stderr.buffer.write(data)
        sys.stderr.flush()

    def eof(self, stream: str) -> None:
        pass


def cmd_run(args: argparse.Namespace) -> int:
    manifest, spec = _agent(args)
    if spec.depends_on:
        client = daemonctl.client(manifest.state_dir)
        if not client.alive():
            raise CorralError(f"agent {args.agent} depends on {', '.join(spec.depends_on)}, "
                              "which are not running", "start them first with 'corral up -d'")
    extra = args.args[1:] if args.args[:1] == ["--"] else args.args
    if extra:  # in the agent's command, before its driver wraps it (a sandbox's bwrap argv)
        command = [spec.argv[0], *extra] if not spec.shell else [" ".join(extra)]
        manifest.agents[args.agent] = spec = spec.model_copy(update={"command": command})
    if spec.isolation == "container":
        from corral.cli.containers import run_once

        return run_once(manifest, args.agent)
    if spec.isolation == "vm":
        from corral.cli import vm

        return vm.run_once(manifest, args.agent)
    fds: list[int] = []
    env, cwd, argv = _environment(manifest, args.agent, "run", fds)
    exe = shutil.which(argv[0], path=env.get("PATH"))
    if exe is None and "/" not in argv[0]:
        raise CorralError(f"agents.{args.agent}: command not found: {argv[0]}",
                          f"install it or fix agents.{args.agent}.command")
    proc = subprocess.Popen([*_as_agent(manifest, args.agent), *argv], cwd=cwd, env=env,
                            pass_fds=fds)
    for fd in fds:
        os.close(fd)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        code = proc.wait()
    finally:
        _forget_all()
    return code if code >= 0 else 128 - code


def _exec_in_sandbox(args: argparse.Namespace, manifest: Any, cmd: list[str]) -> int:
    """``corral exec`` for a sandboxed agent: in its first running instance's sandbox (what the
    agent can see and reach, and nothing more), with the agent's environment. The running
    instance is found first: without one, nothing is prepared for nothing."""
    from corral.drivers.sandbox import inside
    from corral.ownership import identity

    state_dir = project.state_dir(args.file)
    rows = daemonctl.client(state_dir).instances()
    pids = [r["pid"] for r in rows if r["agent"] == args.agent and r["state"] == "running"
            and r.get("pid")]
    spec = manifest.agents[args.agent]  # the command runs as the agent does
    ident = identity.of(args.agent, spec.isolation, spec.user, os.path.abspath(state_dir))
    become = identity.switch(ident, sandboxed=True) if ident else None
    prefix = inside(pids[0] if pids else None, args.agent, become)
    env, _, _ = _environment(manifest, args.agent, "exec")
    _forget_all()  # inside, /run/secrets is the running instance's
    os.execve(prefix[0], [*prefix, *cmd], env)
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    manifest, _ = _agent(args)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise CorralError("no command given", f"write: corral exec {args.agent} -- CMD ARGS")
    if manifest.agents[args.agent].isolation == "container":
        from corral.cli.containers import exec_in

        return exec_in(manifest, args.agent, cmd)
    if manifest.agents[args.agent].isolation == "sandbox":
        return _exec_in_sandbox(args, manifest, cmd)
    if manifest.agents[args.agent].isolation == "vm":  # its guest has no way in from outside
        raise CorralError(f"corral exec cannot enter the guest of vm agent {args.agent}",
                          f"run the command in a guest of its own: corral run {args.agent} "
                          "-- ARGS")
    env, cwd, _ = _environment(manifest, args.agent, "exec")
    exe = shutil.which(cmd[0], path=env.get("PATH")) or cmd[0]
    become = _as_agent(manifest, args.agent)
    argv = [*become, exe, *cmd[1:]] if become else [exe, *cmd[1:]]
    # waited for, not exec'd: its secret files are removed once it ends
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env)
    except OSError as exc:
        _forget_all()
        raise CorralError(f"cannot run {cmd[0]}: {exc.strerror}",
                          "check the command and the agent's PATH") from None
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # the terminal's Ctrl-C reached it too
        code = proc.wait()
    finally:
        _forget_all()
    return code if code >= 0 else 128 - code
