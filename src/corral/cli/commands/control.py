"""``corral start|stop|restart``, ``corral rm`` and ``corral scale``. start, stop and
restart are lean like ``ps`` (no argparse, no ``typing``, no manifest; ``cli.fastpath``
parses them), because scripts and benchmarks time them: every module here is paid on each
call.

``start --wait`` (and ``restart --wait``) return once each instance is ready or failed to be,
as compose's ``up --wait``: healthy when it has a readiness probe, else running, else
completed for a one-shot. The daemon replies when the state changes, no polling. Exit 1 when
one is not ready (its line says why), or when ``--timeout`` came first.
"""

from __future__ import annotations

import sys

from corral.cli import daemonctl, project
from corral.errors import UsageError

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy treats this name as typing's
if TYPE_CHECKING:
    import argparse

DEFAULT_TIMEOUT = 120.0
VERBS = ("start", "stop", "restart")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name in VERBS:
        s = sub.add_parser(name, help=f"{name} agents or instances (all when none named)")
        s.add_argument("names", nargs="*", metavar="AGENT|INSTANCE")
        if name != "stop":
            s.add_argument("--wait", action="store_true",
                           help="return once each instance is ready: healthy with a "
                           "readiness probe, else running, or completed (exit 1 if one "
                           "is not)")
            s.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                           help="seconds --wait waits (default 120)")
        s.set_defaults(handler=cmd_control)
    s = sub.add_parser("rm", help="stop agents or instances and forget them (restarts, last "
                                  "exit); 'corral up' creates them again")
    s.add_argument("names", nargs="+", metavar="AGENT|INSTANCE")
    s.add_argument("-s", "--stop", action="store_true",
                   help="accepted for compose's habit: rm always stops first")
    s.set_defaults(handler=cmd_rm)
    s = sub.add_parser("scale", help="set the replicas of agents: corral scale web=3")
    s.add_argument("pairs", nargs="+", metavar="AGENT=N")
    s.set_defaults(handler=cmd_scale)


def cmd_control(args: argparse.Namespace) -> int:
    """``args.command`` is the verb: start, stop or restart."""
    verb = args.command
    client = daemonctl.client(project.state_dir(args.file), timeout=600)
    names = args.names or None
    if getattr(args, "wait", False) and verb != "stop":
        timeout = float(getattr(args, "timeout", None) or DEFAULT_TIMEOUT)
        reply = client.start_wait(names, timeout, verb=verb)
        from corral.cli import render

        ready = set(reply.get("ready", ()))
        for row in reply["instances"]:
            print(render.summary_line(row))
        failed = any(row["name"] not in ready for row in reply["instances"])
        if not reply["settled"]:
            print(f"corral: some instances are not ready after {timeout:g}s "
                  "(see 'corral ps')", file=sys.stderr)
        return 1 if failed or not reply["settled"] else 0
    do = {"start": client.start, "stop": client.stop, "restart": client.restart}[verb]
    for name in do(names):
        print(f"{name}: {verb} requested" if verb != "stop" else f"{name}: stopped")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    client = daemonctl.client(project.state_dir(args.file), timeout=600)
    for name in client.remove(args.names):
        print(f"{name}: removed")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    pairs = [pair.partition("=") for pair in args.pairs]
    for agent, sep, count in pairs:  # all read before any is applied; a typo is usage (2)
        if not sep or not agent or not count.isdigit():
            raise UsageError(f"cannot read {agent + sep + count!r}",
                             "write AGENT=N, e.g. corral scale web=3")
    client = daemonctl.client(project.state_dir(args.file), timeout=600)
    for agent, _, count in pairs:
        report = client.scale(agent, int(count))
        print(f"{agent}: {count} replica{'s' if count != '1' else ''} "
              f"(+{len(report['started'])} -{len(report['removed'])})")
    return 0
