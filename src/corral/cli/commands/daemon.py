"""``corral daemon``: the project's daemon in the foreground, for service managers."""

from __future__ import annotations

import argparse

from corral.cli import project


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("daemon", help="run the daemon in the foreground (for service managers)"
                   ).set_defaults(handler=cmd_daemon)


def cmd_daemon(args: argparse.Namespace) -> int:
    from corral.daemon.entry import main as daemon_main

    return daemon_main(["--state-dir", project.state_dir(args.file)])
