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
    from corral.drivers.vm import guest, rootfs

    def progress(message: str) -> None:
        print(f"corral vm: {message}", file=sys.stderr, flush=True)

    built = guest.bootstrap(force=args.force, progress=progress)
    print(built.path)
    if args.python:
        print(rootfs.build(force=args.force, progress=progress))
    return 0


def run_once(manifest: Any, agent: str) -> int:
    """``corral run`` for a vm agent: its guest booted, the command run and the guest powered
    off by the vm driver itself, as under the daemon (the driver builds QEMU's command line
    only for a machine it has started)."""
    from corral.cli.local import _StderrProgress, one_off_task, run_attached
    from corral.drivers.vm.driver import VmDriver

    task = one_off_task(manifest, agent, f"{agent}.run")
    return run_attached(VmDriver(), task, _StderrProgress())
