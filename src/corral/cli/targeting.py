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
    s.add_argument("--target", metavar="local|kubernetes|ray", default=None,
                   help="where the fleet runs (default: where the last 'up --target' put "
                        "it, else local); ray: the local daemon places its process and "
                        "venv agents on the manifest's cluster.ray")
    s.add_argument("--context", metavar="NAME",
                   help="kubernetes: the kubeconfig context (default: its current one)")
    s.add_argument("--namespace", metavar="NS",
                   help="kubernetes: the namespace (default: the context's, else default)")


def remote(args: argparse.Namespace, state_dir: str) -> dict[str, Any] | None:
    """The remote target of this command (None: the local daemon); --context and
    --namespace only go with one."""
    from corral.targets import where

    if args.target is not None and args.target not in where.TARGETS:
        from corral.manifest import routes

        if args.target not in routes.placements():  # not a cluster the daemon places on
            known = ", ".join([*where.TARGETS, *routes.shown_placements()])
            raise UsageError(f"--target {args.target}: no such target",
                             f"give one of {known} (ray: pip install 'corral[ray]')")
        return None  # the local daemon places the agents there (``placed``)
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


def placed(args: argparse.Namespace, manifest: Any) -> Any:
    """``up --target ray``: the manifest with its agents placed on that cluster, and a line
    naming those that stay on this host."""
    from corral.targets import where

    if args.target is None or args.target in where.TARGETS:
        return manifest
    from corral.manifest.placement import place_all

    manifest, stays = place_all(manifest, args.target)
    if stays:
        print(f"on this host (not placed on {args.target}): {', '.join(stays)}")
    return manifest
