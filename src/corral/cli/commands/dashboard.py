"""``corral dashboard``: the fleet in a browser. The daemon serves the dashboard on 127.0.0.1
(from now, or since ``up`` with ``dashboard: {port: N}``); this prints a one-time link to it,
and with ``--open`` opens it in the user's browser.

The link's code opens one browser session and is dead after (and after two minutes unused):
a link seen in a shell's history or a process list lets no one else in. ``--open`` hands the
browser a file of the state dir (mode 0600) that forwards to the link, so the code is not in
the browser's command line either.
"""

from __future__ import annotations

import argparse
import os

from corral.cli import daemonctl, project


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "dashboard",
        help="the fleet in a browser: table, dependency graph, "
        "instances, logs; prints a one-time link",
    )
    s.add_argument(
        "--port",
        type=_port,
        help="serve it on this port of 127.0.0.1 (default: "
        "the manifest's dashboard.port, else a free one)",
    )
    s.add_argument("--open", action="store_true", help="open the link in the web browser")
    s.set_defaults(handler=cmd_dashboard)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (a number 1-65535)")
    return int(text)


def cmd_dashboard(args: argparse.Namespace) -> int:
    state_dir = project.state_dir(args.file)
    served = daemonctl.client(state_dir).dashboard(args.port)  # no daemon: exit 3, one line
    print(f"corral dashboard at {served['url']}")
    print(f"open it with this link (it works once, within {served['expires_in']:g}s):")
    print(f"  {served['link']}")
    if args.open:
        _open(state_dir, served["link"])
    return 0


def _open(state_dir: str, link: str) -> None:
    import html
    import webbrowser

    path = os.path.join(state_dir, "dashboard-open.html")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" '
            f'content="0;url={html.escape(link)}"><title>corral</title>\n'
        )
    if not webbrowser.open("file://" + path):
        print("corral: no web browser found here: open the link above in one")
