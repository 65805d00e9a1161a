"""The ``sandbox`` isolation level: a process in namespaces of its own, through bubblewrap.

What the agent sees is decided by ``drivers.bwrap`` (read-only system, private /tmp, hidden
homes, state dir and project dir, its workdir, data dir and volumes writable, its secrets at
``/run/secrets``, its own PID namespace, no network unless ``network: host``, whatever its
class). Two rules keep the manifest's own files out of reach (``drivers.walls``):

- an agent without a ``workdir`` runs in the project root, shown **read-only**: its code runs,
  nothing of the project is written (give it a volume, ``./out:/tmp/out``, to write there);
- the manifest's secret sources and env files, ``corral.yaml`` and the project's ``.env`` are
  covered by ``/dev/null`` (unreadable) wherever the view shows them (workdir, volumes, the
  system), unless a volume names the file itself.

Every bind source is opened beneath its root (``drivers.beneath``) and bound by descriptor: a
link an agent left in its workdir or a volume between two runs makes the next start fail,
``fatal`` with one line naming the link, instead of mounting what it points to. Everything else
is the process driver's: output through the named pipes, stop by signal then group kill, the
cgroup of ``limits.limiter`` (joined before ``exec bwrap``, so limits hold inside), re-adoption.
With a ``venv:`` or ``node:`` block the agent's venv or node_modules is built as for the venv
level and shown read-only; without a ``venv:`` block, a workdir with a requirements.txt or
pyproject.toml implies one, as at the venv level (``drivers.host.options.normalize``).

Run by root, the agent is not root inside: it runs as its ``user:``, else as an unprivileged
uid of its own (``ownership.identity``), with no capability; its data dir becomes that uid's and
its workdir and writable volumes get an ACL entry for it (``hand_over``). Its exec probes and
``corral exec`` run as that uid too.

The handle's pid is bwrap's; bwrap exits with the agent's exit code (128+N when the agent
dies of signal N). The stop signal goes to the whole process group, the agent included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import ClassVar

from corral.drivers.base import (
    Capabilities,
    DriverHealth,
    Handle,
    Launch,
    Output,
    Task,
)
from corral.drivers.host import bwrap, walls
from corral.drivers.host import options as host_options
from corral.drivers.host.deps import Deps
from corral.drivers.host.hosted import HostedDriver
from corral.drivers.host.loopback import Loopbacks
from corral.drivers.host.options import venv_block
from corral.errors import DriverError
from corral.manifest.spec import loopback_group
from corral.ownership import identity as identities

FIX = "apt-get install bubblewrap (or your distribution's bubblewrap package)"
UPGRADE = "install bubblewrap 0.8.0 or newer (Debian 12, Ubuntu 23.04 and later have it)"
SECRETS_IN_SANDBOX = "/run/secrets"


def _python(task: Task) -> bool:
    return venv_block(task.spec) is not None  # a venv: block, written or implied by its files


class SandboxDriver(HostedDriver):
    name: ClassVar[str] = "sandbox"
    # a sandbox agent may have a venv: the venv driver\'s blocks, read here too
    blocks: ClassVar[Mapping[str, type]] = host_options.blocks
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="sandbox", recover=True, stats=True, signals=True, exec_inside=True
    )

    def __init__(self) -> None:
        super().__init__()
        self.deps = Deps(python=_python)
        self._bwrap: str | None = None
        self._loopbacks = Loopbacks()
        self._joining: dict[str, str] = {}  # instance -> the namespace nsenter joins
        self._members: dict[str, tuple[str, int]] = {}  # instance -> (its group, bwrap pid)
        self._passing: dict[str, list[int]] = {}  # instance -> the fds its argv binds

    def _find_bwrap(self) -> str:
        if self._bwrap is None:
            self._bwrap = bwrap.find_bwrap()
        if self._bwrap is None:
            raise DriverError("bubblewrap (bwrap) is not installed: the sandbox level needs it",
                              FIX)
        if not walls.binds_fds(self._bwrap):
            raise DriverError(f"{self._bwrap} is older than 0.8.0: the sandbox binds the "
                              "directories it checked by descriptor (--bind-fd)", UPGRADE)
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
        if not walls.binds_fds(found):
            return DriverHealth(False, f"{found} has no --bind-fd (older than 0.8.0)", UPGRADE)
        return DriverHealth(True, f"namespaces through {found}")

    def inputs_digest(self, task: Task) -> str:
        return self.deps.digest(task)

    async def prepare(self, task: Task, progress: Output | None = None) -> None:
        self._find_bwrap()
        await self.deps.prepare(task, progress)

    def node_tree(self, task: Task) -> str | None:
        """The cached dir holding this agent's node_modules (after ``prepare``)."""
        return self.deps.node_tree(task)

    def venv_dir(self, task: Task) -> str | None:
        """This agent's Python venv (after ``prepare``); None without a ``venv:`` block."""
        return self.deps.venv_dir(task)

    async def start(self, task: Task, output: Output) -> Handle:
        name = loopback_group(task.spec.network)
        if name is None:
            return await self.launcher.start(task, self, output)
        if os.geteuid() != 0:
            raise DriverError(f"agents.{task.agent}: network: {task.spec.network} needs corral "
                              "to run as root (joining a namespace takes CAP_SYS_ADMIN)",
                              "run it as root, or use network: none")
        group = f"{task.project}/{name}"
        members = [pid for i, (g, pid) in self._members.items()
                   if g == group and i in self.launcher.watches]
        self._joining[task.instance] = await self._loopbacks.path(group, members,
                                                                  self._find_bwrap())
        try:
            handle = await self.launcher.start(task, self, output)
        finally:
            del self._joining[task.instance]
        if handle.pid is not None:
            self._members[task.instance] = (group, handle.pid)
        return replace(handle, data={**handle.data, "loopback": group})

    async def recover(self, handle: Handle, output: Output) -> bool:
        alive = await self.launcher.recover(handle, output)
        if alive and handle.data.get("loopback") and handle.pid is not None:
            self._members[handle.instance] = (handle.data["loopback"], handle.pid)
        return alive

    def _hidden(self, task: Task, env: dict[str, str]) -> list[str]:
        state_dir = os.path.dirname(os.path.dirname(task.run_dir))  # STATE/run/INSTANCE
        hidden = [*bwrap.default_hidden(env), state_dir]
        if task.project_dir:
            hidden.append(task.project_dir)
        return hidden

    # --- what to run: bwrap, with the agent's command inside -----------------------------

    def environment(self, task: Task) -> dict[str, str]:
        env = self.deps.environment(task)
        venv, tree = self.venv_dir(task), self.node_tree(task)
        first = [os.path.join(venv, "bin")] if venv else []
        first += [os.path.join(tree, "node_modules", ".bin")] if tree else []
        env["PATH"] = bwrap.sandbox_path(env.get("PATH", os.defpath), self._hidden(task, env),
                                         first)
        if env.get("CORRAL_SECRETS_DIR"):
            env["CORRAL_SECRETS_DIR"] = SECRETS_IN_SANDBOX
        return env

    def argv(self, task: Task) -> list[str]:
        """The command line; every bind source in it is an fd opened by ``drivers.beneath``
        (handed to ``start`` through ``passed_fds``, closed by bwrap once bound)."""
        fds: list[int] = []
        try:
            argv = self._argv(task, fds)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        # an fd that bwrap does not bind it does not close: the agent would inherit a handle
        # on a host directory (openat(fd, "..") walks out of the view), so none is passed
        bound = {argv[i + 1] for i, arg in enumerate(argv[:-1])
                 if arg in ("--bind-fd", "--ro-bind-fd")}
        for fd in [fd for fd in fds if str(fd) not in bound]:
            os.close(fd)
            fds.remove(fd)
        self._passing[task.instance] = fds
        return argv

    def passed_fds(self, task: Task) -> list[int]:
        return self._passing.pop(task.instance, [])

    def _argv(self, task: Task, fds: list[int]) -> list[str]:
        joined = self._joining.get(task.instance)
        env = self.environment(task)
        hidden = self._hidden(task, env)
        command = list(task.spec.argv)
        shown: list[str] = []
        what: dict[str, str] = {}  # a shown path -> how a refusal names it
        venv, tree = self.venv_dir(task), self.node_tree(task)
        if venv is not None:
            shown.append(venv)
            what[venv] = "venv"
            base = bwrap.venv_base(venv)
            if base is not None:
                shown.append(base)
        if tree is not None:
            shown.append(tree)  # the workdir's node_modules link points into it
            what[tree] = "node"
        exe = self._inner_executable(command[0], env, task)
        if exe is not None:
            command[0] = exe
            # the path and what it links to (a venv's python into a hidden home, a venv of
            # its own under /tmp, say) are shown read-only wherever the sandbox hides them
            unseen = [*hidden, *bwrap.MASKED]
            for path, resolve in ((exe, False), (os.path.realpath(exe), True)):
                if any(path == h or path.startswith(h.rstrip("/") + "/") for h in unseen):
                    prefix = bwrap.prefix_of(path, resolve=resolve)
                    if not walls.is_a_home(prefix, env):  # a link the agent made, say
                        shown.append(prefix)
        data_dir = task.env.get("CORRAL_STATE_DIR")
        secrets_dir = task.env.get("CORRAL_SECRETS_DIR") or None
        opener = walls.Opener(task, fds, walls.bind_roots(task))
        opened: dict[str, int] = {}
        opened[os.path.normpath(task.workdir)] = opener.open(task.workdir, "workdir")
        if data_dir:
            opened[os.path.normpath(data_dir)] = opener.open(data_dir, "data dir")
        for path in shown:
            if os.path.normpath(path) in opened:
                continue
            fd = opener.open_if(path, what.get(path, "command"))
            if fd is not None:
                opened[os.path.normpath(path)] = fd
        volumes: list[tuple[bwrap.Source, str, bool]] = []
        for v in task.spec.volumes:
            if v.named:
                os.makedirs(v.source, exist_ok=True)
            volumes.append((opener.open(v.source, "volumes"), v.target, v.read_only))
        project_root = os.path.normpath(task.workdir) == os.path.normpath(task.project_dir)
        ident = self.identity(task)
        network = "joined" if joined else "host" if task.spec.network == "host" else "none"
        hosts = None
        if task.hosts and network != "none":  # the other agents by name (manifest.peers)
            os.makedirs(task.run_dir, mode=0o700, exist_ok=True)
            written = bwrap.hosts_file(os.path.join(task.run_dir, "hosts"), task.hosts)
            hosts = opener.open(written, "hosts")
        view = bwrap.View(
            workdir=task.workdir,
            hidden=tuple(hidden),
            read_only=tuple(shown),
            writable=(data_dir,) if data_dir else (),
            volumes=tuple(volumes),
            secrets_dir=opener.open(secrets_dir, "secrets") if secrets_dir else None,
            hosts=hosts,
            network=network,
            opened=opened,
            masked=walls.masked_in_view(task, hidden),
            workdir_read_only=project_root and bool(task.project_dir),
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
        stay). The project dir itself is not opened up for writing (its other agents' files
        are there): as the default workdir, shown read-only, its identity may only enter and
        list it (``identity.let_in``). Corral's state dir inside a workdir is left out."""
        state_dir = os.path.dirname(task.cache_dir)
        data_dir = task.env.get("CORRAL_STATE_DIR")
        if data_dir and os.path.isdir(data_dir):
            identities.own(data_dir, ident)
        writable = [(f"agents.{task.agent}.workdir", task.workdir)]
        writable += [(f"agents.{task.agent}.volumes", v.source) for v in task.spec.volumes
                     if not v.read_only and os.path.isdir(v.source)]
        for where, path in writable:
            if os.path.normpath(path) == os.path.normpath(task.project_dir or "/"):
                if path == task.workdir:
                    identities.let_in(path, ident, where)
                continue
            identities.grant(path, ident, where, skip=(state_dir,))

    def as_identity(self, ident: identities.Identity, argv: list[str], exe: str
                    ) -> tuple[list[str], str]:
        return argv, exe  # bwrap makes the mounts as root; setpriv inside drops it (argv)

    async def exec(self, task: Task, argv: list[str]) -> list[str]:
        """Runs ``argv`` inside the live instance's sandbox (exec probes, ``corral exec``):
        what the agent sees, the probe sees; nothing it cannot reach, the probe reaches."""
        ident = self.identity(task)  # a probe runs as the agent does, with no more rights
        become = identities.switch(ident, sandboxed=True) if ident else None
        return [*inside(self.launcher.pid(task.instance), task.agent, become), *argv]

    def exec_env(self, task: Task) -> dict[str, str] | None:
        return self.environment(task)  # nsenter and setpriv pass it on to the command

    async def enter(self, task: Task, argv: list[str],
                    running: Callable[[], list[int]]) -> Launch:
        """``corral exec``: in the agent's first running sandbox, as the agent runs."""
        from corral.drivers.host import foreground

        ident = self.identity(task)
        become = identities.switch(ident, sandboxed=True) if ident else None
        return foreground.entering(inside(next(iter(running()), None), task.agent, become), argv)

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
    the ``setpriv`` prefix of the agent's identity (``corral.ownership.identity.switch``)."""
    init = bwrap.sandbox_init(bwrap_pid) if bwrap_pid else None
    if init is None:
        raise DriverError(f"agents.{agent}: no running sandbox to run the command in",
                          f"start it first: corral up -d {agent}")
    try:
        return bwrap.enter(init, become)
    except FileNotFoundError as exc:
        raise DriverError(str(exc), "apt-get install util-linux") from None
