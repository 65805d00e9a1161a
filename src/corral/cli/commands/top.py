"""``corral top``: the fleet live in a terminal UI: its instances' state, health, restarts,
uptime, CPU and memory, the selected agent's logs, and keys to restart, stop, start, scale
and filter. Textual (the ``tui`` extra) is imported here only, when the command runs."""

from __future__ import annotations

import sys

from corral.cli import daemonctl, project
from corral.errors import UsageError

TYPE_CHECKING = False  # not typing's: every command pays for what a module imports
if TYPE_CHECKING:
    import argparse

INSTALL = "pip install 'corral[tui]'"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("top", help="the fleet live in a terminal UI: state, CPU, memory, "
                                   "logs; keys to restart, stop, start, scale, filter")
    s.set_defaults(handler=cmd_top)


def cmd_top(args: argparse.Namespace) -> int:
    try:
        from corral.cli.top.app import TopApp
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in ("textual", "rich"):
            raise
        raise UsageError("corral top needs Textual, which is not installed", INSTALL) from None
    state_dir = project.state_dir(args.file)
    status = daemonctl.client(state_dir).status()  # no daemon: exit 3, in one line
    if not (sys.stdin.isatty() and sys.__stderr__ is not None and sys.__stderr__.isatty()):
        raise UsageError("corral top needs a terminal (it draws on the one it runs in)",
                         "run it in one; 'corral ps' and 'corral events -f' print as text")
    app = TopApp(state_dir, status.get("project"))
    app.run()
    if app.problem is not None:
        raise app.problem
    return 0
