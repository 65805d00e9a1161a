"""``corral observability export``: the Grafana dashboard and Prometheus alert rules for the
metrics corral exports (``corral.observability``)."""

from __future__ import annotations

import argparse
import os
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    o = sub.add_parser("observability", help="a Grafana dashboard and Prometheus alert rules "
                       "for corral's metrics")
    osub = o.add_subparsers(dest="observability_command", metavar="COMMAND", required=True)
    e = osub.add_parser("export", help="write the dashboard JSON, the alert rules and the "
                        "scrape job they expect")
    e.add_argument("--out", metavar="DIR",
                   help="the directory to write (default: ./observability); '-' prints the "
                        "files to stdout")
    e.add_argument("--job", default="corral",
                   help="the Prometheus job that scrapes corral (default: corral)")
    e.add_argument("--target", metavar="HOST:PORT",
                   help="corral's metrics address for the scrape job (default: the "
                        "manifest's metrics host and port, if it sets metrics.port)")
    e.add_argument("--force", action="store_true",
                   help="write into a directory that holds files of its own")
    e.set_defaults(handler=cmd_export)


def _target(args: argparse.Namespace) -> str | None:
    if args.target:
        return str(args.target)
    from corral.cli import project
    from corral.errors import CorralError

    try:
        manifest = project.load(args.file)
    except CorralError:  # no manifest, or one with a problem: the user fills it in
        return None
    m = manifest.metrics
    return f"{m.host}:{m.port}" if m.port is not None else None


def cmd_export(args: argparse.Namespace) -> int:
    from corral.convert import output
    from corral.convert.base import Bundle
    from corral.convert.report import Report
    from corral.observability import DASHBOARD, PLACEHOLDER, RULES, SCRAPE, files

    target = _target(args)
    bundle = Bundle(Report("observability export"), files(args.job, target or PLACEHOLDER))
    if args.out == "-":
        output.show(bundle, sys.stdout)
        return 0
    directory = os.path.abspath(args.out or "observability")
    written = output.write(bundle, directory, kind="observability export", force=args.force)
    print(f"wrote {len(written)} files to {directory}: import {DASHBOARD} into Grafana, "
          f"add {SCRAPE} and {RULES} to Prometheus (docs/observability.md)", file=sys.stderr)
    if target is None:
        print(f"NOTE: {SCRAPE} scrapes {PLACEHOLDER}: give corral a metrics port "
              "(metrics: {port: N} in corral.yaml) and --target HOST:PORT", file=sys.stderr)
    return 0
