"""``corral logs``: the stored records, then (``-f``) the live ones, as ``name | message``
lines or as the stored JSON."""

from __future__ import annotations

import argparse
import json
import sys

from corral.cli import daemonctl, project, render

TYPE_CHECKING = False  # not typing's: every command pays for what a module imports
if TYPE_CHECKING:
    from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("logs", help="show and follow agents' logs")
    s.add_argument("agents", nargs="*", metavar="AGENT")
    s.add_argument("-f", "--follow", action="store_true")
    s.add_argument("--since", help="10m, 2h, an ISO time or unix seconds")
    s.add_argument("--grep", help="regular expression on the message")
    s.add_argument("--level", choices=["debug", "info", "warn", "error", "fatal"],
                   help="minimum level")
    s.add_argument("--json", action="store_true", help="print records as JSON lines")
    s.add_argument("--raw", action="store_true",
                   help="write messages as the agents wrote them, escape sequences included "
                        "(by default control characters are shown escaped, as \\x1b)")
    s.add_argument("--tail", type=int, help="only the last N records")
    s.add_argument("--run", type=_run_number, metavar="N",
                   help="only run N of a scheduled agent (see 'corral ps --all')")
    s.add_argument("--no-color", action="store_true")
    s.set_defaults(handler=cmd_logs)


def cmd_logs(args: argparse.Namespace) -> int:
    client = daemonctl.client(project.state_dir(args.file), timeout=None)
    filters = {key: getattr(args, key) for key in ("since", "grep", "level", "tail", "run")}
    color = render.use_color(args.no_color)
    names = [r["name"] for r in client.instances()]
    width = max((len(n) for n in names), default=8)
    out = sys.stdout
    if not (args.follow and args.tail is None and args.since is None):
        for line in client.log_lines(args.agents, **filters):
            _emit(out, line, args, width, color)
    if args.follow:
        live = {k: v for k, v in filters.items() if k not in ("tail", "since")}
        for line in client.event_lines(logs=True, agents=args.agents, **live):
            if line.startswith(b"event: state") or not line.startswith(b"data: "):
                continue
            record = line[6:]
            if b'"message"' in record:
                _emit(out, record, args, width, color)
    return 0


def _run_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a run number: give N of 1 or more, "
                                         "as 'corral ps --all' lists them")
    return int(text)


def _emit(out: Any, line: bytes, args: argparse.Namespace, width: int, color: bool) -> None:
    """One record: as stored with ``--json`` (JSON escapes its control characters), else
    ``name | message`` with the message's escape sequences shown, not obeyed (``--raw``:
    obeyed)."""
    if not line.strip():
        return
    if args.json:
        out.write(line.decode(errors="replace") + "\n")
    else:
        out.write(render.format_line(json.loads(line), width=width, color=color,
                                     raw=args.raw) + "\n")
    out.flush()
