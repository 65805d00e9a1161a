"""The ``process`` isolation level: a plain child process in its own session and workdir.

Output goes through a named pipe per stream. The child's end is opened read-write, so the pipe
always has a reader: when the daemon is killed, the agent never gets SIGPIPE, its lines wait in
the pipe (1 MiB), and a restarted daemon reopens the pipe by path and reads on. Nothing is lost;
at worst a very chatty agent blocks on write until the daemon is back.

Exit is observed through a pidfd (no polling). Each instance runs in its own cgroup where one
is writable (``corral.limits.limiter``): it carries the resource limits, tells an OOM kill from any
other SIGKILL, measures the whole tree, and stop kills the group, which nothing in it can leave.
Without a writable cgroup, stop signals the process group and every process carrying the
start's ``CORRAL_RUN`` marker, then kills what is left after the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from typing import ClassVar

from corral.drivers.base import (
    Capabilities,
    Driver,
    ExitResult,
    Handle,
    Launch,
    Output,
    ResourceUsage,
    Stream,
    Task,
)
from corral.drivers.host import proctree
from corral.drivers.host.pipes import CommittedReader
from corral.errors import CorralError, DriverError
from corral.limits.limiter import SHELL, Group, Limiter, Placement
from corral.ownership import identity as identities

_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20
_READ_SIZE = 1 << 20


def _which(exe: str, path: str) -> str | None:
    """``shutil.which(exe, path=path)`` for a bare name, as it does it on POSIX. Importing
    shutil loads its optional archive codecs (bz2, lzma): ~0.7 MB resident that the daemon
    would keep for the life of the fleet without ever archiving (benchmark S2)."""
    if not path:
        return None
    seen: set[str] = set()
    for directory in path.split(os.pathsep):
        if directory in seen:
            continue
        seen.add(directory)
        name = os.path.join(directory, exe)
        if os.path.exists(name) and os.access(name, os.X_OK) and not os.path.isdir(name):
            return name
    return None


# errors of a spawn that say the host is short of something, not that the command is wrong
_HOST_SHORT_OF = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM,
                            errno.ENOSPC})


class _Watch:
    """What the driver keeps per live instance: the pidfd, pipe readers and the exit future."""

    __slots__ = ("exit", "fds", "group", "paused", "pid", "pidfd", "stopping", "waited")

    def __init__(self, exit: asyncio.Future[ExitResult], group: Group | None = None) -> None:
        self.exit = exit
        self.group = group
        self.fds: dict[Stream, int] = {}
        self.pidfd = -1
        self.pid: int | None = None  # our child, reaped by us (pidfd + waitpid)
        self.waited = False  # wait() returned its result: forget it once the pipes close
        self.paused = False  # its log could not be written (a full disk): retried each second
        self.stopping = False  # stop() is emptying and removing its group


class ProcessDriver(Driver):
    name: ClassVar[str] = "process"
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="process", recover=True, stats=True, signals=True
    )

    def __init__(self, limiter: Limiter | None = None) -> None:
        self.limiter = limiter or Limiter()
        self._reader = CommittedReader(_READ_SIZE)
        self._watches: dict[str, _Watch] = {}
        self._procs = proctree.ProcTable()
        self._resolved: dict[tuple[str, str, str], str] = {}

    # --- what to run ----------------------------------------------------------------------

    def environment(self, task: Task) -> dict[str, str]:
        return dict(task.env)

    def argv(self, task: Task) -> list[str]:
        return task.spec.argv

    def passed_fds(self, task: Task) -> list[int]:
        """Descriptors the argv just built names (a sandbox's checked bind sources): the
        child inherits them, the supervisor closes its copies once it is spawned."""
        return []

    def identity(self, task: Task) -> identities.Identity | None:
        """Whom the agent runs as (None: as corral); ``IdentityError`` when it cannot be."""
        return identities.of(task.agent, task.spec.isolation, task.spec.user,
                           os.path.dirname(task.cache_dir))

    def hand_over(self, task: Task, ident: identities.Identity, exe: str) -> None:
        """Before the start: the data dir becomes the identity's; a workdir or executable it
        cannot reach is one clear line instead of the agent's EACCES."""
        where = f"agents.{task.agent}.user"
        # a venv's python links to the interpreter it was made from (pyenv's, under /root)
        for what, path in (("workdir", task.workdir), ("command", exe),
                           ("command", os.path.realpath(exe))):
            closed = identities.reachable(path, ident)
            if closed is not None:
                raise identities.IdentityError(
                    f"{where}: {ident.name} cannot reach its {what} {path} ({closed} is closed "
                    "to it)", f"open {closed} to it (chmod o+x {closed}), or move the agent "
                    "where it can read")
        data_dir = task.env.get("CORRAL_STATE_DIR")
        if data_dir and os.path.isdir(data_dir):
            identities.admit(os.path.dirname(task.cache_dir), ident)
            identities.own(data_dir, ident)
            os.chmod(data_dir, 0o700)  # its own, and no one else's

    def as_identity(self, ident: identities.Identity, argv: list[str], exe: str
                    ) -> tuple[list[str], str]:
        """The argv and executable that run ``argv`` as ``ident`` (after the cgroup join)."""
        switch = identities.switch(ident, sandboxed=False)
        return [*switch, exe, *argv[1:]], switch[0]

    def known_pids(self) -> set[int]:
        return {w.pid for w in self._watches.values() if w.pid is not None}

    def _resolve(self, argv: list[str], env: dict[str, str], task: Task) -> str:
        exe = argv[0]
        key = (exe, env.get("PATH", os.defpath), task.workdir)
        found = self._resolved.get(key)
        if found is not None and os.access(found, os.X_OK):
            return found
        found = self._resolve_uncached(argv, env, task)
        self._resolved[key] = found
        return found

    def _resolve_uncached(self, argv: list[str], env: dict[str, str], task: Task) -> str:
        exe = argv[0]
        if "/" in exe:
            path = exe if os.path.isabs(exe) else os.path.join(task.workdir, exe)
            if not os.path.exists(path):
                raise DriverError(
                    f"agents.{task.agent}: command not found: {exe}",
                    f"check the path in agents.{task.agent}.command",
                )
            return path
        found = _which(exe, env.get("PATH", os.defpath))
        if found is None:
            raise DriverError(
                f"agents.{task.agent}: command not found: {exe}",
                f"install {exe} or fix agents.{task.agent}.command",
            )
        return found

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, task: Task, output: Output) -> Handle:
        env = self.environment(task)
        argv = self.argv(task)
        passed = self.passed_fds(task)
        try:
            return await self._spawn(task, output, env, argv, passed)
        finally:
            for fd in passed:
                with contextlib.suppress(OSError):
                    os.close(fd)

    async def _spawn(self, task: Task, output: Output, env: dict[str, str], argv: list[str],
                     passed: list[int]) -> Handle:
        exe = self._resolve(argv, env, task)
        if not os.path.isdir(task.workdir):
            raise DriverError(
                f"agents.{task.agent}: workdir does not exist: {task.workdir}",
                f"create it or fix agents.{task.agent}.workdir",
            )
        ident = self.identity(task)
        if ident is not None:  # in a thread: a first ACL grant walks the whole workdir
            await asyncio.to_thread(self.hand_over, task, ident, exe)
            argv, exe = self.as_identity(ident, argv, exe)
        run_id = os.urandom(16).hex()  # as unique as uuid4, without importing uuid
        env[proctree.MARKER] = run_id
        os.makedirs(task.run_dir, mode=0o700, exist_ok=True)
        paths: dict[Stream, str] = {}
        child_fds: dict[Stream, int] = {}
        placement = self._place(task)
        if placement.shell_lines:  # join the group (or set rlimits) before the agent runs
            argv, exe = placement.wrap(argv), SHELL
        loop = asyncio.get_running_loop()
        watch = _Watch(loop.create_future(), placement.group)
        try:
            for stream in ("stdout", "stderr"):
                path = os.path.join(task.run_dir, f"{stream}.fifo")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                os.mkfifo(path, 0o600)
                paths[stream] = path
                watch.fds[stream] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                child_fds[stream] = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                with contextlib.suppress(OSError):
                    fcntl.fcntl(child_fds[stream], _F_SETPIPE_SZ, _PIPE_SIZE)
            try:
                popen = subprocess.Popen(
                    argv,
                    executable=exe,
                    cwd=task.workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=child_fds["stdout"],
                    stderr=child_fds["stderr"],
                    start_new_session=True,
                    close_fds=True,
                    pass_fds=passed,
                )
            except OSError as exc:
                if exc.errno in _HOST_SHORT_OF:
                    raise  # a failed start the restart policy retries, not a bad command
                raise DriverError(
                    f"agents.{task.agent}: cannot start {argv[0]}: {exc.strerror}",
                    f"fix agents.{task.agent}.command",
                ) from None
        except BaseException:
            for fd in (*watch.fds.values(), *child_fds.values()):
                os.close(fd)
            if placement.group is not None:
                self._remove(placement.group)
            raise
        finally:
            for fd in child_fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
        # The Popen object is not kept (~1.5 KB an instance, benchmark S2): the child is ours
        # to reap (pidfd + waitpid in _on_exit). A returncode tells Popen it has nothing to
        # do: without one, its finalizer would queue it in subprocess._active, where a later
        # Popen's cleanup could reap our child first and lose its exit code.
        watch.pid = popen.pid
        popen.returncode = 0
        handle = Handle(
            driver=self.name,
            instance=task.instance,
            pid=watch.pid,
            started_at=time.time(),
            pid_start=None,  # filled by complete(): /proc is slow while the child execs
            data={"run_id": run_id, "stdout": paths["stdout"], "stderr": paths["stderr"],
                  **placement.data()},
        )
        self._attach(handle, watch, output)
        return handle

    def _place(self, task: Task) -> Placement:
        try:
            return self.limiter.place(
                project=task.project, key=os.path.dirname(task.run_dir), instance=task.instance,
                res=task.spec.resources, where=f"agents.{task.agent}.resources")
        except CorralError as exc:
            raise DriverError(exc.problem, exc.fix) from None
        except OSError as exc:
            raise DriverError(f"agents.{task.agent}: cannot make its cgroup: {exc}",
                              "check the supervisor may write its own cgroup") from None

    def _remove(self, group: Group, tries: int = 40) -> None:
        """Remove an emptied group; one whose last member is still exiting is retried from
        the loop a moment later instead of blocking it."""
        if not group.remove() and tries > 1:
            asyncio.get_running_loop().call_later(0.05, self._remove, group, tries - 1)

    def _group(self, handle: Handle) -> Group | None:
        watch = self._watches.get(handle.instance)
        if watch is not None and watch.group is not None:
            return watch.group
        return self.limiter.adopt(handle.data)

    def _attach(self, handle: Handle, watch: _Watch, output: Output) -> None:
        loop = asyncio.get_running_loop()
        assert handle.pid is not None
        self._watches[handle.instance] = watch
        for stream, fd in watch.fds.items():
            loop.add_reader(fd, self._pump, watch, stream, output)
        try:
            watch.pidfd = os.pidfd_open(handle.pid)
        except ProcessLookupError:
            self._on_exit(handle, watch, output)
            return
        except OSError:
            # no descriptor to watch it by: an agent the daemon cannot see exit must not
            # run; it is killed and reaped, and the start fails (to be retried)
            with contextlib.suppress(OSError):
                os.killpg(handle.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(handle.pid, 0)
            for stream in list(watch.fds):
                self._close_stream(watch, stream, output)
            self._watches.pop(handle.instance, None)
            if watch.group is not None:
                self._remove(watch.group)
            raise
        loop.add_reader(watch.pidfd, self._on_exit, handle, watch, output)

    def _pump(self, watch: _Watch, stream: Stream, output: Output) -> None:
        fd = watch.fds.get(stream)
        if fd is None:
            return
        try:
            data = self._reader.read(fd)  # still in the pipe until it is in the log
        except BlockingIOError:
            return
        if data:
            try:
                output.feed(stream, data)
            except OSError as exc:  # the log's disk is full: the bytes stay in the pipe
                self._pause(watch, stream, output, exc)
                return
            self._reader.commit(fd, len(data))
            watch.paused = False
            return
        self._close_stream(watch, stream, output)

    def _pause(self, watch: _Watch, stream: Stream, output: Output, exc: OSError) -> None:
        """Stop reading ``stream`` for a while: its bytes wait in the pipe (the agent blocks
        once it is full: back-pressure, nothing lost) and are offered again later."""
        fd = watch.fds.get(stream)
        if fd is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(fd)
        if not watch.paused:
            print(f"corral: cannot write the logs ({exc.strerror or exc}); the agents' output "
                  "waits in their pipes and is written once there is room: free disk space",
                  file=sys.stderr, flush=True)
        watch.paused = True

        def resume() -> None:  # ``paused`` stays set until a write succeeds: one line
            if watch.fds.get(stream) == fd:
                loop.add_reader(fd, self._pump, watch, stream, output)

        loop.call_later(1.0, resume)

    def _close_stream(self, watch: _Watch, stream: Stream, output: Output) -> None:
        fd = watch.fds.pop(stream, None)
        if fd is None:
            return
        asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        output.eof(stream)
        if not watch.fds and watch.waited:  # waited for already: the last pipe closed late
            for instance, known in list(self._watches.items()):  # (a sandbox's inner processes)
                if known is watch:
                    del self._watches[instance]

    def _drain(self, watch: _Watch, output: Output) -> None:
        """Read what the pipes still hold, so an exit is reported after its last lines."""
        for stream in list(watch.fds):
            fd = watch.fds[stream]
            while True:
                try:
                    data = self._reader.read(fd)
                except BlockingIOError:
                    break
                if not data:
                    self._close_stream(watch, stream, output)
                    break
                try:
                    output.feed(stream, data)
                except OSError as exc:  # a full disk at exit: the pipe stays open, paused,
                    self._pause(watch, stream, output, exc)  # and is read out later
                    break
                self._reader.commit(fd, len(data))

    def _on_exit(self, handle: Handle, watch: _Watch, output: Output) -> None:
        loop = asyncio.get_running_loop()
        if watch.pidfd >= 0:
            loop.remove_reader(watch.pidfd)
            os.close(watch.pidfd)
            watch.pidfd = -1
        result = ExitResult(code=None)
        assert handle.pid is not None
        try:
            pid, status = os.waitpid(handle.pid, os.WNOHANG)
            if pid:
                if os.WIFSIGNALED(status):
                    result = ExitResult(code=128 + os.WTERMSIG(status),
                                        signal=os.WTERMSIG(status))
                else:
                    result = ExitResult(code=os.WEXITSTATUS(status))
        except ChildProcessError:
            pass  # re-adopted: not our child, the code is unknowable
        if watch.group is not None and result.signal in (None, signal.SIGKILL) \
                and result.code in (None, 128 + signal.SIGKILL) and watch.group.oom_kills():
            result = replace(result, oom_killed=True)  # the kernel's SIGKILL, not a stranger's
        if watch.group is not None and not watch.stopping and not watch.group.members():
            self._remove(watch.group)  # nothing left behind: stop() has nothing to kill
        self._drain(watch, output)
        if not watch.exit.done():
            watch.exit.set_result(result)

    def exit_future(self, handle: Handle) -> asyncio.Future[ExitResult] | None:
        watch = self._watches.get(handle.instance)
        return None if watch is None else watch.exit

    async def wait(self, handle: Handle) -> ExitResult:
        watch = self._watches.get(handle.instance)
        if watch is None:
            return ExitResult(code=None, error="not started by this driver")
        try:
            return await asyncio.shield(watch.exit)
        finally:
            if watch.exit.done():
                watch.waited = True
                self._forget(handle, watch)

    def _forget(self, handle: Handle, watch: _Watch) -> None:
        if self._watches.get(handle.instance) is watch and not watch.fds:
            del self._watches[handle.instance]

    async def stop(self, handle: Handle, *, sig: int, timeout: float) -> None:
        group = self._group(handle)
        if group is not None:
            return await self._stop_group(handle, group, sig=sig, timeout=timeout)
        watch = self._watches.get(handle.instance)
        run_id = handle.data.get("run_id", "")
        assert handle.pid is not None
        self._procs.invalidate()
        members = await self._procs.members(run_id) if run_id else set()
        if watch is None or not watch.exit.done():
            proctree.signal_group(handle.pid, sig)
        proctree.signal_all(members, sig)
        ended = watch is None or watch.exit.done()
        if ended and not members and not proctree.alive(handle.pid, handle.pid_start):
            proctree.signal_group(handle.pid, signal.SIGKILL)
            return  # nothing of the tree is left: no grace period, no second scan
        deadline = time.monotonic() + timeout
        if watch is not None and not watch.exit.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(watch.exit), timeout)
        elif watch is None and proctree.alive(handle.pid, handle.pid_start):
            while time.monotonic() < deadline and proctree.alive(handle.pid, handle.pid_start):
                await asyncio.sleep(0.05)
        while run_id and time.monotonic() < deadline:  # the rest of the tree, as above
            self._procs.invalidate()
            if not await self._procs.members(run_id):
                break
            await asyncio.sleep(0.05)
        # Whatever is left of the tree after the grace period is killed, group and strays,
        # until a scan finds nothing: a member may fork once more before its SIGKILL lands.
        for _ in range(50):
            proctree.signal_group(handle.pid, signal.SIGKILL)
            self._procs.invalidate()
            left = await self._procs.members(run_id) if run_id else set()
            if not left:
                break
            proctree.signal_all(left, signal.SIGKILL)
            await asyncio.sleep(0.005)
        if watch is not None:
            await asyncio.shield(watch.exit)

    async def _stop_group(self, handle: Handle, group: Group, *, sig: int,
                          timeout: float) -> None:
        """systemd's KillMode=control-group: ``sig`` to every member, the grace period, then
        the group is killed until empty and removed. No /proc scan: membership is exact."""
        watch = self._watches.get(handle.instance)
        assert handle.pid is not None
        deadline = time.monotonic() + timeout
        if watch is not None:
            watch.stopping = True  # the group is ours to empty and remove, not _on_exit's
        if watch is None or not watch.exit.done():
            proctree.signal_group(handle.pid, sig)
        group.signal(sig)
        if watch is not None and not watch.exit.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(watch.exit), timeout)
        elif watch is None:
            while time.monotonic() < deadline and proctree.alive(handle.pid, handle.pid_start):
                await asyncio.sleep(0.05)
        # The main process may be a wrapper that dies at once (the sandbox's bwrap), or leave
        # children still shutting down: they get the rest of the grace period too. Each look
        # at the group reads a file: once here, then only while someone is left (S5: 500 stops).
        left = group.members()
        while left and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            left = group.members()
        if left:
            await group.kill()
        self._remove(group)
        if watch is not None:
            await asyncio.shield(watch.exit)

    def complete(self, handle: Handle) -> Handle:
        if handle.pid is None or handle.pid_start is not None:
            return handle
        watch = self._watches.get(handle.instance)
        if watch is None or watch.exit.done():
            return handle  # reaped: the pid may be reused, so no start time is safe to read
        return replace(handle, pid_start=proctree.start_time(handle.pid))

    async def recover(self, handle: Handle, output: Output) -> bool:
        group = self.limiter.adopt(handle.data)
        if handle.pid is None or not proctree.alive(handle.pid, handle.pid_start):
            if group is not None:  # what it left behind while the supervisor was away
                await group.kill()
                self._remove(group)
            return False
        loop = asyncio.get_running_loop()
        watch = _Watch(loop.create_future(), group)
        for stream in ("stdout", "stderr"):
            path = handle.data.get(stream)
            if not path:
                continue
            try:
                watch.fds[stream] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue
        self._attach(handle, watch, output)
        return True

    async def stats(self, handle: Handle) -> ResourceUsage | None:
        if handle.pid is None:
            return None
        group = self._group(handle)
        if group is not None:  # the whole tree, as the kernel counts it
            got = group.usage()
            if got is not None:
                return ResourceUsage(got.cpu_seconds, got.memory_bytes, got.processes)
        usage = proctree.cpu_and_rss(handle.pid)
        if usage is None:
            return None
        return ResourceUsage(cpu_seconds=usage[0], rss_bytes=usage[1], processes=1)

    def foreground(self, task: Task, argv: list[str] | None = None) -> Launch | None:
        from corral.drivers.host import foreground  # the CLI's alone: not the daemon's (S2)

        return foreground.host_launch(self, task, argv)  # corral run/exec: its own child
