"""``corral vm bootstrap``: build (or find cached) the guest VM agents boot."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("vm", help="the vm isolation level: build its guest")
    vm = s.add_subparsers(dest="vm_command", metavar="VM_COMMAND", required=True)
    b = vm.add_parser("bootstrap", help="assemble a guest (kernel + busybox) from Debian's "
                                        "packages into the cache; idempotent")
    b.add_argument("--python", action="store_true",
                   help="also debootstrap a Debian root with python3 for vm.python agents "
                        "(about a minute, once)")
    b.add_argument("--force", action="store_true", help="rebuild even when cached")
    s.set_defaults(handler=cmd_vm)


def cmd_vm(args: argparse.Namespace) -> int:
    from corral.drivers.vm import guest, rootfs

    def progress(message: str) -> None:
        print(f"corral vm: {message}", file=sys.stderr, flush=True)

    built = guest.bootstrap(force=args.force, progress=progress)
    print(built.path)
    if args.python:
        print(rootfs.build(force=args.force, progress=progress))
    return 0

