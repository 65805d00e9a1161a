"""``corral ps``: scripts, dashboards and restart watchers poll it, so it must answer in a few
tens of milliseconds. It imports only what the answer needs (no argparse, no ``typing``, the
table renderer only for the table): every module here is paid on each poll."""

from __future__ import annotations

import json
import sys

from corral.cli import daemonctl, project
from corral.errors import UsageError

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy treats this name as typing's
if TYPE_CHECKING:
    import argparse

    from corral.api.client import Client


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from corral.runtime.state import State

    states = [s.value for s in State]
    s = sub.add_parser("ps", help="show every instance (or those of AGENT...)")
    s.add_argument("--json", action="store_true")
    s.add_argument("-a", "--all", action="store_true",
                   help="the scheduled agents' past runs (run number, start, end, exit, status)")
    s.add_argument("--status", action="append", metavar="STATE",
                   help=f"only instances in this state (repeatable): {', '.join(states)}; "
                        "in a cluster a pod's (running, pending, CrashLoopBackOff...)")
    s.add_argument("agents", nargs="*", metavar="AGENT|INSTANCE")
    from corral.cli import targeting

    targeting.flags(s)
    s.set_defaults(handler=cmd_ps)


def cmd_ps(args: argparse.Namespace) -> int:
    state_dir = project.state_dir(args.file)
    from corral.cli import targeting

    target = targeting.remote(args, state_dir)
    if target is not None:
        return _remote(args, target)
    if args.status:
        from corral.runtime.state import State

        known = [x.value for x in State]
        unknown = [x for x in args.status if x not in known]
        if unknown:
            raise UsageError(f"--status {unknown[0]}: no such state",
                             f"give one of {', '.join(known)}")
    client = daemonctl.client(state_dir)
    if args.all:  # the fast path leaves --all to the full parser
        return _runs(client, args)
    rows = client.instances()
    if args.agents:
        rows = [r for r in rows if r["agent"] in args.agents or r["name"] in args.agents]
    if args.status:
        rows = [r for r in rows if r["state"] in args.status]
    if args.json:
        sys.stdout.write(json.dumps(rows, separators=(",", ":")) + "\n")  # C encoder
    else:
        from corral.cli import render

        sys.stdout.write(render.table(rows, color=render.use_color(False)))
    return 0


def _runs(client: Client, args: argparse.Namespace) -> int:
    runs = client.runs()
    if args.agents:
        runs = [r for r in runs if r["agent"] in args.agents or r["instance"] in args.agents]
    if args.json:
        sys.stdout.write(json.dumps(runs, separators=(",", ":")) + "\n")
    else:
        from corral.cli import render

        sys.stdout.write(render.runs_table(runs))
    return 0


def _remote(args: argparse.Namespace, target: dict[str, object]) -> int:
    """The project's pods and workloads in the cluster, in the ps table's form."""
    from corral.targets.kubernetes import fleet

    label = target.get("project") or fleet.project_label(project.load(args.file))
    rows = fleet.rows(target, str(label))
    if args.agents:
        rows = [r for r in rows if r["agent"] in args.agents or r["name"] in args.agents]
    if args.status:  # a pod's states as kubectl spells them, in any case
        wanted = {x.lower() for x in args.status}
        rows = [r for r in rows if r["state"].lower() in wanted]
    if args.json:
        sys.stdout.write(json.dumps(rows, separators=(",", ":")) + "\n")
    else:
        from corral.cli import render

        sys.stdout.write(render.pods_table(rows, color=render.use_color(False)))
    return 0
