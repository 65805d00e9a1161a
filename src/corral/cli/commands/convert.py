"""``corral export FORMAT`` and ``corral import compose|procfile``: the fleet to other tools'
files and back (``corral.convert``). Each prints what it could not carry (its report) on
stderr, or as JSON on stdout with ``--report json``."""

from __future__ import annotations

import argparse
import os
import sys

from corral.cli import project
from corral.errors import CorralError, UsageError

IMPORTERS = {
    "compose": "a docker-compose.yml / compose.yaml (default: the one in this directory)",
    "procfile": "a Procfile (foreman, honcho, Heroku)",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("export", help="write the fleet as compose, Kubernetes, systemd or "
                       "make files, with a report of what did not carry")
    s.add_argument("format", metavar="FORMAT",
                   help="compose, kubernetes, systemd, make, or an installed plug-in's")
    s.add_argument("--out", metavar="DIR",
                   help="the directory to write (default: ./export/FORMAT); '-' prints the "
                        "files to stdout")
    s.add_argument("--report", choices=["text", "json"], default="text",
                   help="json: the report on stdout as JSON (text: on stderr)")
    s.add_argument("--include-secrets", action="store_true",
                   help="write secret values into the output, not references (a warning)")
    s.add_argument("--namespace", metavar="NS", help="the Kubernetes namespace to write")
    s.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="a format's own setting (repeat), e.g. kustomize=false")
    s.add_argument("--force", action="store_true",
                   help="write into a directory that holds files of its own")
    s.set_defaults(handler=cmd_export)

    i = sub.add_parser("import", help="write a corral.yaml from a compose file or a Procfile")
    i.add_argument("source", choices=sorted(IMPORTERS), metavar="KIND",
                   help="; ".join(f"{k}: {v}" for k, v in IMPORTERS.items()))
    i.add_argument("path", nargs="?", metavar="FILE", help="the file to import")
    i.add_argument("--env", dest="env_file", metavar="FILE",
                   help="procfile: the .env file its processes read (default: .env if any)")
    i.add_argument("--profile", action="append", default=[], metavar="NAME",
                   help="compose: keep the services of this profile too (repeat)")
    i.add_argument("--name", help="the project's name (default: from the file or its dir)")
    i.add_argument("--output", "-o", metavar="FILE",
                   help="where to write the manifest (default: corral.yaml beside the "
                        "source; '-' for stdout)")
    i.add_argument("--report", choices=["text", "json"], default="text",
                   help="json: the report on stdout as JSON (text: on stderr)")
    i.add_argument("--force", action="store_true", help="overwrite an existing manifest")
    i.set_defaults(handler=cmd_import)


def _settings(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {pair!r} is not KEY=VALUE", "write --set KEY=VALUE")
        out[key] = value
    return out


def _report(report: object, form: str) -> None:
    if form == "json":
        sys.stdout.write(report.as_json())  # type: ignore[attr-defined]
    else:
        sys.stderr.write(report.as_text())  # type: ignore[attr-defined]


def cmd_export(args: argparse.Namespace) -> int:
    from corral.convert import output, registry
    from corral.convert.base import ExportOptions

    exporter = registry.load(args.format)
    if args.out == "-" and args.report == "json":
        raise UsageError("--report json and --out - would both write stdout",
                         "give --out DIR to have the report alone on stdout")
    manifest = project.load(args.file)
    if args.include_secrets:
        print("WARN: --include-secrets writes secret values into the exported files: keep "
              "them out of version control", file=sys.stderr)
    directory = None if args.out == "-" else os.path.abspath(
        args.out or os.path.join("export", exporter.name))
    options = ExportOptions(include_secrets=args.include_secrets, namespace=args.namespace,
                            settings=_settings(args.settings), out_dir=directory)
    bundle = exporter.export(manifest, options)
    if directory is None:
        output.show(bundle)
    else:
        written = output.write(bundle, directory, kind=f"export {exporter.name}",
                               force=args.force)
        count = f"{len(written)} file{'' if len(written) == 1 else 's'}"
        bundle.report.notes.append(f"wrote {count} to {directory}")
    _report(bundle.report, args.report)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from importlib import import_module

    module = import_module(f"corral.convert.imports.{args.source}")
    source = module.find(args.path)  # the file, found or checked (one-line errors)
    text, report = module.convert(source, args)
    target = args.output or os.path.join(os.path.dirname(source), "corral.yaml")
    if target == "-":
        if args.report == "json":
            raise UsageError("--report json and --output - would both write stdout",
                             "give --output FILE to have the report alone on stdout")
        sys.stdout.write(text)
    else:
        if os.path.exists(target) and not args.force:
            raise CorralError(f"{target} exists", "pass --force to overwrite it, or "
                              "--output FILE to write another")
        try:
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise CorralError(f"cannot write {target}: {exc.strerror}",
                              "give a writable --output FILE") from None
        report.notes.append(f"wrote {target}")
    _report(report, args.report)
    return 0
