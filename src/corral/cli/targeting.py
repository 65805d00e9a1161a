"""``--target local|kubernetes``, ``--context`` and ``--namespace`` of ``up``, ``down``,
``ps`` and ``logs``, and the remote target they mean (``corral.targets.where``). Import-light:
``corral ps`` imports it."""

from __future__ import annotations

from corral.errors import UsageError

TYPE_CHECKING = False  # not typing's: `corral ps` imports this module
if TYPE_CHECKING:
    import argparse
    from typing import Any


def flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--target", choices=["local", "kubernetes"], default=None,
                   help="where the fleet runs (default: where the last 'up --target' put "
                        "it, else local)")
    s.add_argument("--context", metavar="NAME",
                   help="kubernetes: the kubeconfig context (default: its current one)")
    s.add_argument("--namespace", metavar="NS",
                   help="kubernetes: the namespace (default: the context's, else default)")


def remote(args: argparse.Namespace, state_dir: str) -> dict[str, Any] | None:
    """The remote target of this command (None: the local daemon); --context and
    --namespace only go with one."""
    from corral.targets import where

    target = where.chosen(args.target, state_dir)
    if target is None:
        if args.context or args.namespace:
            raise UsageError("--context and --namespace are for --target kubernetes",
                             "add --target kubernetes")
        return None
    if args.context:
        target = {**target, "context": args.context}
    if args.namespace:
        target = {**target, "namespace": args.namespace}
    return target
