"""The shared executor of the host-process drivers (process, venv, sandbox, vm), as Nomad's
``drivers/shared/executor`` serves raw_exec and exec: each driver says what to launch (a
``Recipe``), the ``Launcher`` runs it and watches it.

Output goes through a named pipe per stream. The child's end is opened read-write, so the pipe
always has a reader: when the daemon is killed, the agent never gets SIGPIPE, its lines wait in
the pipe (1 MiB), and a restarted daemon reopens the pipe by path and reads on. Nothing is lost;
at worst a very chatty agent blocks on write until the daemon is back.

Exit is observed through a pidfd (no polling). Each instance runs in its own cgroup where one
is writable (``corral.limits.limiter``), joined by a shell before the agent's first instruction:
it carries the resource limits, tells an OOM kill from any other SIGKILL, measures the whole
tree, and stop kills the group, which nothing in it can leave (``drivers.host.stop``). A
re-adopted instance is found again by what its ``Handle.data`` names: the pipes' paths, the
run marker and the group.
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

from corral.drivers.base import (
    ExitResult,
    Handle,
    Output,
    ResourceUsage,
    Stream,
    Task,
    driver_errors,
)
from corral.drivers.host import proctree, stop
from corral.drivers.host.pipes import CommittedReader
from corral.drivers.host.recipe import Commands, Recipe
from corral.errors import DriverError
from corral.limits.limiter import SHELL, Group, Limiter, Placement
from corral.manifest.spec import Resources

_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20
_READ_SIZE = 1 << 20

# errors of a spawn that say the host is short of something, not that the command is wrong
_HOST_SHORT_OF = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM,
                            errno.ENOSPC})


class Watch:
    """What the launcher keeps per live instance: the pidfd, pipe readers and the exit future."""

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


class Launcher:
    def __init__(self, driver: str, limiter: Limiter | None = None) -> None:
        self.driver = driver  # Handle.driver of what it starts
        self.limiter = limiter or Limiter()
        self.watches: dict[str, Watch] = {}
        self._reader = CommittedReader(_READ_SIZE)
        self._procs = proctree.ProcTable()
        self.commands = Commands()

    def known_pids(self) -> set[int]:
        return {w.pid for w in self.watches.values() if w.pid is not None}

    def pid(self, instance: str) -> int | None:
        """The pid of a live instance started or re-adopted here."""
        watch = self.watches.get(instance)
        return None if watch is None else watch.pid

    def running(self, instance: str) -> bool:
        watch = self.watches.get(instance)
        return watch is not None and not watch.exit.done()

    # --- what to run ----------------------------------------------------------------------

    def place(self, task: Task, res: Resources) -> Placement:
        with driver_errors(task, host=("cannot make its cgroup",
                                       "check the supervisor may write its own cgroup")):
            return self.limiter.place(
                project=task.project, key=os.path.dirname(task.run_dir), instance=task.instance,
                res=res, where=f"agents.{task.agent}.resources")

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, task: Task, recipe: Recipe, output: Output) -> Handle:
        env = recipe.environment(task)
        argv = recipe.argv(task)
        passed = recipe.passed_fds(task)
        try:
            exe = self.commands.resolve(argv, env, task)
            if not os.path.isdir(task.workdir):
                raise DriverError(f"agents.{task.agent}: workdir does not exist: {task.workdir}",
                                  f"create it or fix agents.{task.agent}.workdir")
            ident = recipe.identity(task)
            if ident is not None:  # in a thread: a first ACL grant walks the whole workdir
                await asyncio.to_thread(recipe.hand_over, task, ident, exe)
                argv, exe = recipe.as_identity(ident, argv, exe)
            return self._spawn(task, output, env, argv, exe, passed, recipe.resources(task))
        finally:
            for fd in passed:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _spawn(self, task: Task, output: Output, env: dict[str, str], argv: list[str],
               exe: str, passed: list[int], res: Resources) -> Handle:
        run_id = os.urandom(16).hex()  # as unique as uuid4, without importing uuid
        env[proctree.MARKER] = run_id
        os.makedirs(task.run_dir, mode=0o700, exist_ok=True)
        paths: dict[Stream, str] = {}
        child_fds: dict[Stream, int] = {}
        placement = self.place(task, res)
        if placement.shell_lines:  # join the group (or set rlimits) before the agent runs
            argv, exe = placement.wrap(argv), SHELL
        watch = Watch(asyncio.get_running_loop().create_future(), placement.group)
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
                    argv, executable=exe, cwd=task.workdir, env=env, stdin=subprocess.DEVNULL,
                    stdout=child_fds["stdout"], stderr=child_fds["stderr"],
                    start_new_session=True, close_fds=True, pass_fds=passed)
            except OSError as exc:
                if exc.errno in _HOST_SHORT_OF:
                    raise  # a failed start the restart policy retries, not a bad command
                raise DriverError(f"agents.{task.agent}: cannot start {argv[0]}: {exc.strerror}",
                                  f"fix agents.{task.agent}.command") from None
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
            driver=self.driver, instance=task.instance, pid=watch.pid, started_at=time.time(),
            pid_start=None,  # filled by complete(): /proc is slow while the child execs
            data={"run_id": run_id, "stdout": paths["stdout"], "stderr": paths["stderr"],
                  **placement.data()})
        self._attach(handle, watch, output)
        return handle

    def _remove(self, group: Group, tries: int = 40) -> None:
        """Remove an emptied group; one whose last member is still exiting is retried from
        the loop a moment later instead of blocking it."""
        if not group.remove() and tries > 1:
            asyncio.get_running_loop().call_later(0.05, self._remove, group, tries - 1)

    def _group(self, handle: Handle) -> Group | None:
        watch = self.watches.get(handle.instance)
        if watch is not None and watch.group is not None:
            return watch.group
        return self.limiter.adopt(handle.data)

    def _attach(self, handle: Handle, watch: Watch, output: Output) -> None:
        loop = asyncio.get_running_loop()
        assert handle.pid is not None
        self.watches[handle.instance] = watch
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
            self.watches.pop(handle.instance, None)
            if watch.group is not None:
                self._remove(watch.group)
            raise
        loop.add_reader(watch.pidfd, self._on_exit, handle, watch, output)

    def _pump(self, watch: Watch, stream: Stream, output: Output) -> None:
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

    def _pause(self, watch: Watch, stream: Stream, output: Output, exc: OSError) -> None:
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

    def _close_stream(self, watch: Watch, stream: Stream, output: Output) -> None:
        fd = watch.fds.pop(stream, None)
        if fd is None:
            return
        asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        output.eof(stream)
        if not watch.fds and watch.waited:  # waited for already: the last pipe closed late
            for instance, known in list(self.watches.items()):  # (a sandbox's inner processes)
                if known is watch:
                    del self.watches[instance]

    def _drain(self, watch: Watch, output: Output) -> None:
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

    def _on_exit(self, handle: Handle, watch: Watch, output: Output) -> None:
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
        watch = self.watches.get(handle.instance)
        return None if watch is None else watch.exit

    async def wait(self, handle: Handle) -> ExitResult:
        watch = self.watches.get(handle.instance)
        if watch is None:
            return ExitResult(code=None, error="not started by this driver")
        try:
            return await asyncio.shield(watch.exit)
        finally:
            if watch.exit.done():
                watch.waited = True
                if self.watches.get(handle.instance) is watch and not watch.fds:
                    del self.watches[handle.instance]

    async def exited(self, handle: Handle, timeout: float) -> None:
        """Until the instance exits, at most ``timeout`` seconds (no signal sent)."""
        watch = self.watches.get(handle.instance)
        if watch is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(watch.exit), timeout)
            return
        await stop.gone(handle, time.monotonic() + timeout)

    async def stop(self, handle: Handle, *, sig: int, timeout: float) -> None:
        watch = self.watches.get(handle.instance)
        exit = None if watch is None else watch.exit
        group = self._group(handle)
        if group is None:
            return await stop.tree(handle, exit, self._procs, sig=sig, timeout=timeout)
        if watch is not None:
            watch.stopping = True  # the group is ours to empty and remove, not _on_exit's
        await stop.group(handle, exit, group, sig=sig, timeout=timeout)
        self._remove(group)
        if exit is not None:
            await asyncio.shield(exit)

    def complete(self, handle: Handle) -> Handle:
        if handle.pid is None or handle.pid_start is not None:
            return handle
        if not self.running(handle.instance):
            return handle  # reaped: the pid may be reused, so no start time is safe to read
        return replace(handle, pid_start=proctree.start_time(handle.pid))

    async def recover(self, handle: Handle, output: Output) -> bool:
        group = self.limiter.adopt(handle.data)
        if handle.pid is None or not proctree.alive(handle.pid, handle.pid_start):
            if group is not None:  # what it left behind while the supervisor was away
                await group.kill()
                self._remove(group)
            return False
        watch = Watch(asyncio.get_running_loop().create_future(), group)
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
