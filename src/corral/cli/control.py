"""``corral start|stop|restart``: lean like ``ps`` (no argparse, no ``typing``, no manifest),
because scripts and benchmarks time them: every module here is paid on each call.

``start --wait`` (and ``restart --wait``) return once each instance runs or failed to, as
compose's ``up --wait``: the daemon replies when the state changes, no polling. Exit 1 when
one did not reach running (its line says why), or when ``--timeout`` came first.
"""

from __future__ import annotations

import sys

from corral.cli import daemonctl, project

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy treats this name as typing's
if TYPE_CHECKING:
    import argparse

DEFAULT_TIMEOUT = 120.0


def control(args: argparse.Namespace, verb: str) -> int:
    client = daemonctl.client(project.state_dir(args.file), timeout=600)
    names = args.names or None
    if getattr(args, "wait", False) and verb != "stop":
        timeout = float(getattr(args, "timeout", None) or DEFAULT_TIMEOUT)
        reply = client.start_wait(names, timeout, verb=verb)
        from corral.cli import output

        failed = False
        for row in reply["instances"]:
            print(output.summary_line(row))
            failed = failed or row["state"] != "running"
        if not reply["settled"]:
            print(f"corral: some instances are still starting after {timeout:g}s "
                  "(see 'corral ps')", file=sys.stderr)
        return 1 if failed or not reply["settled"] else 0
    do = {"start": client.start, "stop": client.stop, "restart": client.restart}[verb]
    for name in do(names):
        print(f"{name}: {verb} requested" if verb != "stop" else f"{name}: stopped")
    return 0


def parse(argv: list[str]) -> object | None:
    """``[-f FILE] start|stop|restart [--wait] [--timeout S] [NAME...]`` without argparse;
    None for anything else (help, a typo: the full parser explains)."""
    from types import SimpleNamespace

    args = list(argv)
    file = None
    if args[:1] in (["-f"], ["--file"]) and len(args) >= 2:
        file, args = args[1], args[2:]
    if not args or args[0] not in ("start", "stop", "restart"):
        return None
    verb, rest = args[0], args[1:]
    wait, timeout, names = False, None, []
    while rest:
        arg = rest.pop(0)
        if arg == "--wait" and verb != "stop":
            wait = True
        elif arg == "--timeout" and verb != "stop" and rest:
            try:
                timeout = float(rest.pop(0))
            except ValueError:
                return None
        elif arg.startswith("-"):
            return None
        else:
            names.append(arg)
    return SimpleNamespace(file=file, command=verb, names=names, wait=wait, timeout=timeout)
