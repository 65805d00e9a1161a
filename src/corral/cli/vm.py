"""``corral vm bootstrap``: build (or find cached) the guest VM agents boot."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("vm", help="the vm isolation level: build its guest")
    vm = s.add_subparsers(dest="vm_command", metavar="VM_COMMAND", required=True)
    b = vm.add_parser("bootstrap", help="assemble a guest (kernel + busybox) from Debian's "
                                        "packages into the cache; idempotent")
    b.add_argument("--python", action="store_true",
                   help="also debootstrap a Debian root with python3 for vm.python agents "
                        "(about a minute, once)")
    b.add_argument("--force", action="store_true", help="rebuild even when cached")


def cmd_vm(args: argparse.Namespace) -> int:
    from corral.vm import guest, rootfs

    def progress(message: str) -> None:
        print(f"corral vm: {message}", file=sys.stderr, flush=True)

    built = guest.bootstrap(force=args.force, progress=progress)
    print(built.path)
    if args.python:
        print(rootfs.build(force=args.force, progress=progress))
    return 0


def run_once(manifest: Any, agent: str, extra: list[str]) -> int:
    """``corral run`` for a vm agent: its guest booted, the command run and the guest powered
    off by the vm driver itself, as under the daemon (the driver builds QEMU's command line
    only for a machine it has started), its console to this terminal and its exit code ours;
    Ctrl-C stops it with the agent's stop signal and grace period."""
    import asyncio
    import signal

    from corral.cli.local import _StderrProgress, forget_secrets, one_off_task
    from corral.cli.output import Attached
    from corral.drivers.vm import VmDriver

    spec = manifest.agents[agent]
    if extra:
        command = [spec.argv[0], *extra] if not spec.shell else [" ".join(extra)]
        manifest.agents[agent] = spec = spec.model_copy(update={"command": command})
    task = one_off_task(manifest, agent, f"{agent}.run")
    driver = VmDriver()

    async def go() -> int:
        await driver.prepare(task, _StderrProgress())
        handle = await driver.start(task, Attached())
        try:
            result = await driver.wait(handle)
        except asyncio.CancelledError:
            await driver.stop(handle, sig=signal.Signals[spec.stop.signal],
                              timeout=spec.stop.timeout)
            raise
        if result.error or result.oom_killed:
            print(f"corral: {agent}: {result.describe()}", file=sys.stderr)
        return result.code if result.code is not None else 1

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        return 130
    finally:
        forget_secrets(task)
