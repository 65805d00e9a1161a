"""The ``sandbox`` isolation level: a process in namespaces of its own, through bubblewrap.

What the agent sees is decided by ``drivers.bwrap`` (read-only system, private /tmp, hidden
homes, state dir and project dir, its workdir, data dir and volumes writable, its secrets at
``/run/secrets``, its own PID namespace, no network unless ``network: host``). Everything else
is the process driver's: output through the named pipes, stop by signal then group kill, the
cgroup of ``corral.limits`` (joined before ``exec bwrap``, so limits hold inside), re-adoption.
With a ``venv:`` or ``node:`` block the agent's venv or node_modules is built as for the venv
level and shown read-only.

Run by root, the agent is not root inside: it runs as its ``user:``, else as an unprivileged
uid of its own (``corral.identity``), with no capability; its data dir becomes that uid's and
its workdir and writable volumes get an ACL entry for it (``hand_over``). Its exec probes and
``corral exec`` run as that uid too.

The handle's pid is bwrap's; bwrap exits with the agent's exit code (128+N when the agent
dies of signal N). The stop signal goes to the whole process group, the agent included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from typing import ClassVar

from corral import identity as identities
from corral.drivers import bwrap
from corral.drivers.base import Capabilities, DriverHealth, Handle, Output, Task
from corral.drivers.loopback import Loopbacks
from corral.drivers.venv import VenvDriver
from corral.errors import DriverError
from corral.manifest.spec import loopback_group

FIX = "apt-get install bubblewrap (or your distribution's bubblewrap package)"
SECRETS_IN_SANDBOX = "/run/secrets"


class SandboxDriver(VenvDriver):
    name: ClassVar[str] = "sandbox"
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="sandbox", recover=True, stats=True, signals=True, exec_inside=True
    )

    def __init__(self) -> None:
        super().__init__()
        self._bwrap: str | None = None
        self._loopbacks = Loopbacks()
        self._joining: dict[str, str] = {}  # instance -> the namespace nsenter joins
        self._members: dict[str, tuple[str, int]] = {}  # instance -> (its group, bwrap pid)

    def _find_bwrap(self) -> str:
        if self._bwrap is None:
            self._bwrap = bwrap.find_bwrap()
        if self._bwrap is None:
            raise DriverError("bubblewrap (bwrap) is not installed: the sandbox level needs it",
                              FIX)
        return self._bwrap

    async def check(self) -> DriverHealth:
        found = bwrap.find_bwrap()
        if found is None:
            return DriverHealth(False, "bwrap not found", FIX)
        try:  # installed is not enough: user namespaces may be off for this user
            proc = subprocess.run([found, "--ro-bind", "/", "/", "--unshare-pid", "--", "true"],
                                  capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return DriverHealth(False, f"{found} cannot run: {exc}", FIX)
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["?"])[-1]
            return DriverHealth(False, f"{found} fails: {why}",
                                "enable unprivileged user namespaces "
                                "(sysctl kernel.unprivileged_userns_clone=1) or run as root")
        return DriverHealth(True, f"namespaces through {found}")

    @staticmethod
    def _python(task: Task) -> bool:
        return task.spec.venv is not None  # a sandbox gets a venv only when it asks for one

    async def prepare(self, task: Task, progress: Output | None = None) -> None:
        self._find_bwrap()
        await super().prepare(task, progress)

    async def start(self, task: Task, output: Output) -> Handle:
        name = loopback_group(task.spec.network)
        if name is None:
            return await super().start(task, output)
        if os.geteuid() != 0:
            raise DriverError(f"agents.{task.agent}: network: {task.spec.network} needs corral "
                              "to run as root (joining a namespace takes CAP_SYS_ADMIN)",
                              "run it as root, or use network: none")
        group = f"{task.project}/{name}"
        members = [pid for i, (g, pid) in self._members.items()
                   if g == group and i in self._watches]
        self._joining[task.instance] = await self._loopbacks.path(group, members,
                                                                  self._find_bwrap())
        try:
            handle = await super().start(task, output)
        finally:
            del self._joining[task.instance]
        if handle.pid is not None:
            self._members[task.instance] = (group, handle.pid)
        return replace(handle, data={**handle.data, "loopback": group})

    async def recover(self, handle: Handle, output: Output) -> bool:
        alive = await super().recover(handle, output)
        if alive and handle.data.get("loopback") and handle.pid is not None:
            self._members[handle.instance] = (handle.data["loopback"], handle.pid)
        return alive

    def _hidden(self, task: Task, env: dict[str, str]) -> list[str]:
        state_dir = os.path.dirname(os.path.dirname(task.run_dir))  # STATE/run/INSTANCE
        hidden = [*bwrap.default_hidden(env), state_dir]
        if task.project_dir:
            hidden.append(task.project_dir)
        return hidden

    def environment(self, task: Task) -> dict[str, str]:
        env = super().environment(task)
        venv, tree = self.venv_dir(task), self.node_tree(task)
        first = [os.path.join(venv, "bin")] if venv else []
        first += [os.path.join(tree, "node_modules", ".bin")] if tree else []
        env["PATH"] = bwrap.sandbox_path(env.get("PATH", os.defpath), self._hidden(task, env),
                                         first)
        if env.get("CORRAL_SECRETS_DIR"):
            env["CORRAL_SECRETS_DIR"] = SECRETS_IN_SANDBOX
        return env

    def argv(self, task: Task) -> list[str]:
        joined = self._joining.get(task.instance)
        env = self.environment(task)
        hidden = self._hidden(task, env)
        command = list(task.spec.argv)
        shown: list[str] = []
        venv, tree = self.venv_dir(task), self.node_tree(task)
        if venv is not None:
            shown.append(venv)
            base = bwrap.venv_base(venv)
            if base is not None:
                shown.append(base)
        if tree is not None:
            shown.append(tree)  # the workdir's node_modules link points into it
        exe = self._inner_executable(command[0], env, task)
        if exe is not None:
            command[0] = exe
            # the path and what it links to (a venv's python into a hidden home, a venv of
            # its own under /tmp, say) are shown read-only wherever the sandbox hides them
            unseen = [*hidden, *bwrap.MASKED]
            for path, resolve in ((exe, False), (os.path.realpath(exe), True)):
                if any(path == h or path.startswith(h.rstrip("/") + "/") for h in unseen):
                    shown.append(bwrap.prefix_of(path, resolve=resolve))
        volumes = []
        for v in task.spec.volumes:
            if v.named:
                os.makedirs(v.source, exist_ok=True)
            elif not os.path.exists(v.source):
                raise DriverError(f"agents.{task.agent}.volumes: {v.source} does not exist",
                                  "create it, or use a named volume (NAME:/target)")
            volumes.append((v.source, v.target, v.read_only))
        data_dir = task.env.get("CORRAL_STATE_DIR")
        ident = self.identity(task)
        view = bwrap.View(
            workdir=task.workdir,
            hidden=tuple(hidden),
            read_only=tuple(shown),
            writable=(data_dir,) if data_dir else (),
            volumes=tuple(volumes),
            secrets_dir=task.env.get("CORRAL_SECRETS_DIR") or None,
            network="joined" if joined else "host" if task.spec.network == "host" else "none",
            identity=tuple(identities.switch(ident, sandboxed=True)) if ident else (),
        )
        argv = bwrap.argv(view, command, bwrap=self._find_bwrap())
        if joined:
            nsenter = shutil.which("nsenter")
            if nsenter is None:
                raise DriverError("nsenter (util-linux) is not installed: a shared loopback "
                                  "needs it", "apt-get install util-linux")
            argv = [nsenter, f"--net={joined}", "--", *argv]
        return argv

    def hand_over(self, task: Task, ident: identities.Identity, exe: str) -> None:
        """What the sandbox shows writable becomes writable by its identity: the data dir its
        own, the workdir and writable volumes through an ACL entry (their owner and mode
        stay). The project dir itself is not opened up (its other agents' files are there);
        corral's state dir inside a workdir is left out."""
        state_dir = os.path.dirname(task.cache_dir)
        data_dir = task.env.get("CORRAL_STATE_DIR")
        if data_dir and os.path.isdir(data_dir):
            identities.own(data_dir, ident)
        writable = [(f"agents.{task.agent}.workdir", task.workdir)]
        writable += [(f"agents.{task.agent}.volumes", v.source) for v in task.spec.volumes
                     if not v.read_only and os.path.isdir(v.source)]
        for where, path in writable:
            if os.path.normpath(path) == os.path.normpath(task.project_dir or "/"):
                continue
            identities.grant(path, ident, where, skip=(state_dir,))

    def as_identity(self, ident: identities.Identity, argv: list[str], exe: str
                    ) -> tuple[list[str], str]:
        return argv, exe  # bwrap makes the mounts as root; setpriv inside drops it (argv)

    async def exec(self, task: Task, argv: list[str]) -> list[str]:
        """Runs ``argv`` inside the live instance's sandbox (exec probes, ``corral exec``):
        what the agent sees, the probe sees; nothing it cannot reach, the probe reaches."""
        watch = self._watches.get(task.instance)
        ident = self.identity(task)  # a probe runs as the agent does, with no more rights
        become = identities.switch(ident, sandboxed=True) if ident else None
        return [*inside(watch.pid if watch is not None else None, task.agent, become), *argv]

    def exec_env(self, task: Task) -> dict[str, str] | None:
        return self.environment(task)  # nsenter and setpriv pass it on to the command

    def _inner_executable(self, name: str, env: dict[str, str], task: Task) -> str | None:
        """The agent's own executable, found as the sandbox will find it: a name through the
        sandbox's PATH, else through the host's (then its install prefix is shown read-only);
        a relative path from the workdir. None when the shell will resolve it (``shell``)."""
        if "/" in name:
            path = name if os.path.isabs(name) else os.path.join(task.workdir, name)
            if not os.path.exists(path):
                raise DriverError(f"agents.{task.agent}: command not found: {name}",
                                  f"check the path in agents.{task.agent}.command")
            return path
        found = shutil.which(name, path=env.get("PATH")) or shutil.which(
            name, path=task.env.get("PATH", os.defpath))
        if found is None:
            raise DriverError(f"agents.{task.agent}: command not found: {name}",
                              f"install {name} or fix agents.{task.agent}.command")
        return found


def inside(bwrap_pid: int | None, agent: str, become: list[str] | None = None) -> list[str]:
    """The argv prefix into the running sandbox whose bwrap has ``bwrap_pid``; ``become``:
    the ``setpriv`` prefix of the agent's identity (``corral.identity.switch``)."""
    init = bwrap.sandbox_init(bwrap_pid) if bwrap_pid else None
    if init is None:
        raise DriverError(f"agents.{agent}: no running sandbox to run the command in",
                          f"start it first: corral up -d {agent}")
    try:
        return bwrap.enter(init, become)
    except FileNotFoundError as exc:
        raise DriverError(str(exc), "apt-get install util-linux") from None
