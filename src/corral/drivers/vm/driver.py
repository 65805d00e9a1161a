"""The ``vm`` isolation level: the agent runs in a QEMU guest (its own kernel).

QEMU is a process like any other agent's, so this driver is a recipe for the shared host
launcher (``drivers.host.launcher``) with another command: the same named pipes carry the
guest's serial ports (a killed daemon re-adopts a running VM and loses no line), the same pidfd
sees QEMU exit, the same cgroup holds it for stats and the final kill. What differs is what
the guest tells through its console (``vm.console``): when it booted and the job's exit code,
since QEMU itself exits 0 on every power-off.

- size: ``resources.cpus`` (rounded up) and ``resources.memory`` become ``-smp`` and ``-m``;
  the cgroup gets no memory limit of its own, as QEMU needs more than the guest's RAM and a
  limit of exactly that size would OOM-kill the VM instead of the guest's process;
- stop: the stop signal is written to the run share, then an ACPI power button press over QMP
  (``system_powerdown``); the guest's init signals the job and powers off once it ended, so
  the job's own code is reported. After the grace period QEMU is killed. A guest that has not
  booted yet has no job to stop: it is killed at once;
- a guest that does not boot within ``boot_timeout`` (or whose QEMU exits before) is reported as
  an error naming the last console lines, so the cause (a kernel panic, a missing module) shows
  in ``corral ps`` and the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import signal
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import ClassVar

from corral.drivers.base import (
    Capabilities,
    DriverHealth,
    ExitResult,
    Handle,
    Launch,
    Output,
    Task,
    driver_errors,
)
from corral.drivers.host import proctree
from corral.drivers.host.hosted import HostedDriver
from corral.drivers.vm import guest as guests
from corral.drivers.vm import job, qemu, rootfs
from corral.drivers.vm import options as vm_options
from corral.drivers.vm.console import Console
from corral.drivers.vm.options import vm_block
from corral.environ import for_guest
from corral.errors import CorralError, DriverError
from corral.manifest.spec import Resources

DEFAULT_MEMORY_MB = 256
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True, slots=True)
class Settings:
    """What the vm driver runs a guest with, from the agent's decoded ``vm:`` block
    (``options.VmOptions``). ``ports`` are guest TCP ports reachable on the host at
    127.0.0.1: ``8080`` keeps the number (so a ``tcp: 8080`` probe just works), ``"18080:80"``
    maps host 18080 to guest 80."""

    guest: str | None = None  # a bootstrapped guest dir; default: the cached one
    ports: tuple[qemu.Forward, ...] = ()
    network: bool = False  # user-mode networking (NAT) even with no forwarded port
    boot_timeout: float = 60.0
    python: bool = False  # run in the shared Debian root with python3 (corral.drivers.vm.rootfs)


def _forward(value: str) -> qemu.Forward:
    host, sep, guest_port = value.partition(":")
    if not sep:
        return qemu.Forward(int(host), int(host))
    return qemu.Forward(int(host), int(guest_port))


def settings(task: Task) -> Settings:
    """The task's guest settings (the block is validated: ports are PORT or HOST:GUEST)."""
    block = vm_block(task.spec)
    return Settings(guest=block.guest, ports=tuple(_forward(p) for p in block.ports),
                    network=task.spec.network == "host", boot_timeout=block.boot_timeout,
                    python=block.python)


def _size(task: Task) -> tuple[int, int]:
    res = task.spec.resources
    cpus = math.ceil(res.cpus) if res.cpus else 1
    memory = res.memory // (1 << 20) if res.memory else DEFAULT_MEMORY_MB
    return cpus, memory


class VmDriver(HostedDriver):
    name: ClassVar[str] = "vm"
    blocks: ClassVar[Mapping[str, type]] = vm_options.blocks
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="vm", recover=True, stats=True, signals=True
    )

    def __init__(self) -> None:
        super().__init__()
        self._machines: dict[str, qemu.Machine] = {}  # until start() has built the argv
        self._consoles: dict[str, Console] = {}
        self._deadlines: dict[str, asyncio.TimerHandle] = {}

    async def check(self) -> DriverHealth:
        binary = qemu.find()
        if binary is None:
            return DriverHealth(False, f"{qemu.QEMU} not found", qemu.INSTALL)
        kvm, why = await qemu.probe_kvm(binary, fresh=True)
        accel = "KVM" if kvm else (
            f"software emulation (TCG, seconds per boot; KVM not usable: {why}; to use it, "
            "enable virtualisation for this machine and give the user /dev/kvm)")
        root = rootfs.find()
        python = (f"Python root {root}" if root else
                  f"no Python root for vm.python agents ({rootfs.FIX})")
        found = guests.find()
        if found is None:
            return DriverHealth(False, f"{binary}, {accel}; no guest bootstrapped",
                                guests.FIX)
        return DriverHealth(True, f"{binary}, {accel}; guest {found.path} "
                                  f"(kernel {found.kernel_version}); {python}")

    def inputs_digest(self, task: Task) -> str:
        """A new guest (another kernel, a new init) counts as a changed spec."""
        path = os.path.realpath(settings(task).guest or guests.default_path())
        return hashlib.sha256(path.encode()).hexdigest()[:16]

    async def prepare(self, task: Task, progress: Output | None = None) -> None:
        self._guest(task)
        self._root(task)

    @staticmethod
    def _root(task: Task) -> str | None:
        if not settings(task).python:
            return None
        found = rootfs.find()
        if found is None:
            raise DriverError(f"agents.{task.agent}: vm.python is set but no Python root is "
                              f"built for VM guests (looked at {rootfs.default_path()})",
                              rootfs.FIX)
        return found

    def _guest(self, task: Task) -> guests.Guest:
        options = settings(task)
        with driver_errors(task, only=DriverError):
            return guests.Guest.load(options.guest or guests.default_path())

    # --- what runs: QEMU, with the agent's command in the run share -----------------------

    def environment(self, task: Task) -> dict[str, str]:
        """QEMU's own environment: the agent's goes into the guest, not to QEMU."""
        return {"PATH": task.env.get("PATH", os.defpath), "HOME": task.env.get("HOME", "/")}

    def argv(self, task: Task) -> list[str]:
        return qemu.argv(self._machines[task.instance], qemu.find() or qemu.QEMU)

    def resources(self, task: Task) -> Resources:
        """A group with no limit: the VM's size is its limit (see the module doc)."""
        return Resources()

    @staticmethod
    def _guest_env(task: Task) -> dict[str, str]:
        """The host's PATH and HOME mean nothing in the guest unless the agent set them."""
        env = for_guest(task.env, task.spec)  # the host's users, paths and runtime dir
        env["PATH"] = task.spec.env.get("PATH", job.GUEST_PATH)
        env["HOME"] = task.spec.env.get("HOME", "/root")
        return env

    async def start(self, task: Task, output: Output) -> Handle:
        if qemu.find() is None:
            raise DriverError(f"agents.{task.agent}: QEMU is not installed ({qemu.QEMU} not "
                              "found)", qemu.INSTALL)
        found = self._guest(task)
        root = self._root(task)
        options = settings(task)
        if not os.path.isdir(task.workdir):
            raise DriverError(f"agents.{task.agent}: workdir does not exist: {task.workdir}",
                              f"create it or fix agents.{task.agent}.workdir")
        kvm, _ = await qemu.probe_kvm()
        cpus, memory = _size(task)
        share = os.path.join(task.run_dir, "guest")
        os.makedirs(task.run_dir, mode=0o700, exist_ok=True)
        job.write(share, argv=task.spec.argv, env=self._guest_env(task), workdir=task.workdir,
                  network=options.network or bool(options.ports), root=root is not None)
        token = uuid.uuid4().hex[:16]
        machine = qemu.Machine(
            kernel=found.kernel, initrd=found.initrd, token=token, run_share=share,
            workdir=task.workdir, qmp=_qmp_path(task.run_dir), cpus=cpus, memory_mb=memory,
            forwards=options.ports, network=options.network, accel="kvm" if kvm else "tcg",
            root=root)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(machine.qmp)
        console = Console(output, token)
        console.boot_timeout = options.boot_timeout
        self._machines[task.instance] = machine
        try:
            handle = await self.launcher.start(task, self, console)
        finally:
            del self._machines[task.instance]
        handle = replace(handle, data={
            **handle.data, "token": token, "qmp": machine.qmp, "share": share,
            "ports": ",".join(f"{f.host}:{f.guest}" for f in options.ports)})
        self._consoles[task.instance] = console
        loop = asyncio.get_running_loop()
        self._deadlines[task.instance] = loop.call_later(
            options.boot_timeout, self._boot_deadline, handle, console)
        return handle

    def _boot_deadline(self, handle: Handle, console: Console) -> None:
        self._deadlines.pop(handle.instance, None)
        if console.booted or not self.launcher.running(handle.instance) or handle.pid is None:
            return
        console.timed_out = True
        proctree.signal_group(handle.pid, signal.SIGKILL)

    def exit_future(self, handle: Handle) -> asyncio.Future[ExitResult] | None:
        """Not lent: QEMU's own exit is not the agent's (``wait`` reads the guest's marker)."""
        return None

    async def wait(self, handle: Handle) -> ExitResult:
        result = await self.launcher.wait(handle)
        timer = self._deadlines.pop(handle.instance, None)
        if timer is not None:
            timer.cancel()
        console = self._consoles.pop(handle.instance, None)
        if console is None or result.error:
            return result
        return self._result(handle, result, console)

    @staticmethod
    def _result(handle: Handle, qemu_result: ExitResult, console: Console) -> ExitResult:
        code = console.exit_code
        if code is not None:
            sig = code - 128 if 128 < code < 128 + signal.NSIG else None
            return ExitResult(code=code, signal=sig)
        if console.timed_out:
            return ExitResult(code=None, error=(
                f"the VM guest did not boot within {console.boot_timeout:g}s; console: "
                f"{console.describe_tail()}"))
        if not console.booted and not console.stopping:
            return ExitResult(code=qemu_result.code, error=(
                f"the VM guest did not boot ({qemu_result.describe()} before its init ran); "
                f"console: {console.describe_tail()}"))
        if qemu_result.signal is not None or console.stopping:
            return qemu_result  # killed: after the grace period, or by someone else
        return ExitResult(code=None, error=(
            f"the VM powered off without reporting an exit code ({qemu_result.describe()}); "
            f"console: {console.describe_tail()}"))

    # --- stop: the power button, then the kill --------------------------------------------

    async def stop(self, handle: Handle, *, sig: int, timeout: float) -> None:
        console = self._consoles.get(handle.instance)
        watch = self.launcher.watches.get(handle.instance)
        if console is not None:
            console.stopping = True
        booted = console is None or console.booted  # re-adopted: it booted long ago
        running = handle.pid is not None and (
            not watch.exit.done() if watch is not None
            else proctree.alive(handle.pid, handle.pid_start))
        if running and booted and sig != signal.SIGKILL:  # a kill needs no power button
            share = handle.data.get("share", "")
            with contextlib.suppress(OSError):
                job.request_stop(share, sig)
            pressed = await qemu.qmp(handle.data.get("qmp", ""), ["system_powerdown"])
            if pressed:
                await self.launcher.exited(handle, timeout)
        await self.launcher.stop(handle, sig=signal.SIGKILL, timeout=0)

    async def recover(self, handle: Handle, output: Output) -> bool:
        console = Console(output, handle.data.get("token", ""), booted=True)
        if not await self.launcher.recover(handle, console):
            return False
        self._consoles[handle.instance] = console
        return True

    async def exec(self, task: Task, argv: list[str]) -> list[str]:
        raise DriverError(f"agents.{task.agent}: exec into a running VM is not supported",
                          "run the command as its own vm agent")

    def foreground(self, task: Task, argv: list[str] | None = None) -> Launch | None:
        return None  # QEMU's command line exists only for a machine start() made

    async def enter(self, task: Task, argv: list[str],
                    running: Callable[[], list[int]]) -> Launch | None:
        raise CorralError(f"corral exec cannot enter the guest of vm agent {task.agent}",
                          f"run the command in a guest of its own: corral run {task.agent} "
                          "-- ARGS")  # its guest has no way in from outside


def _qmp_path(run_dir: str) -> str:
    """``RUN/qmp.sock``, or a short stand-in under /tmp when too long for a Unix socket."""
    path = os.path.join(run_dir, "qmp.sock")
    if len(path.encode()) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.path.abspath(run_dir).encode()).hexdigest()[:20]
    base = os.path.join("/tmp", f"corral-{os.getuid()}")
    os.makedirs(base, mode=0o700, exist_ok=True)
    return os.path.join(base, f"{digest}.qmp")
