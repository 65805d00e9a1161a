"""``corral events``: what happened to the fleet and why (state changes, restarts with their
reason, probe failures, OOMs, hook runs), kept by the daemon; ``-f`` then follows.

The events are in the state store, so they are read there after ``down`` too (no daemon).
An error's whole text is shown, each further line indented under the first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from corral.cli import daemonctl, project, render
from corral.errors import DaemonNotRunning, NotFound

TYPE_CHECKING = False  # not typing's: every command pays for what a module imports
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("events", help="state changes, restarts and why, probe failures, "
                                      "OOMs and hook runs")
    s.add_argument("agents", nargs="*", metavar="AGENT")
    s.add_argument("-f", "--follow", action="store_true", help="then follow new events")
    s.add_argument("--json", action="store_true", help="one JSON object a line, as kept")
    s.add_argument("--tail", type=_count, help="only the last N events")
    s.add_argument("--no-color", action="store_true")
    s.set_defaults(handler=cmd_events)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (write a number, e.g. 50)")
    return int(text)


def cmd_events(args: argparse.Namespace) -> int:
    state_dir = project.state_dir(args.file)
    client = daemonctl.client(state_dir, timeout=None)
    color = render.use_color(args.no_color)
    if client.alive():
        events: Iterable[dict[str, Any]] = client.journal(args.agents or None, tail=args.tail,
                                                          follow=args.follow)
    else:
        from corral import paths
        from corral.runtime.store import read_events

        kept = read_events(paths.store_file(state_dir), args.agents or None, args.tail)
        if args.agents and not kept:
            raise NotFound(f"no events of {', '.join(map(repr, args.agents))}",
                           "see 'corral ps' for the names")
        _show(kept, args.json, color)
        if args.follow:
            raise DaemonNotRunning("the fleet is not running: there is nothing to follow",
                                   "start it with 'corral up -d'")
        return 0
    _show(events, args.json, color)
    return 0


def _show(events: Iterable[dict[str, Any]], as_json: bool, color: bool) -> None:
    out = sys.stdout
    for event in events:
        out.write(json.dumps(event) + "\n" if as_json else line(event, color=color))
        out.flush()


_COLORS = {"fatal": 31, "oom": 31, "restart": 33, "unhealthy": 33, "healthy": 32, "hook": 36}


def line(event: dict[str, Any], *, color: bool) -> str:
    """``TIME INSTANCE EVENT what``; a multi-line reason or hook output continues indented."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.get("time", 0)))
    kind = str(event.get("event", "?"))
    head = f"{when} {render.printable(str(event.get('instance', '?')))} {kind}"
    if kind in ("state", "fatal", "restart"):
        head += f" [{event.get('state')}]"
    text = [str(event.get("reason", ""))]
    if kind == "hook" and event.get("output"):
        text.append(str(event["output"]))
    body = [printable for chunk in text for printable in
            (render.printable(part) for part in chunk.rstrip("\n").split("\n"))]
    first, rest = (body[0], body[1:]) if body else ("", [])
    code = _COLORS.get(kind)
    if color and code:
        head = f"\033[{code}m{head}\033[0m"
    shown = head + (f" {first}" if first else "")
    return "\n".join([shown, *("    " + more for more in rest)]) + "\n"
