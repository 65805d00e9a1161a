"""``corral init``, ``corral config`` and ``corral schema``: the manifest itself, written,
shown with its defaults, described for editors. No daemon is involved."""

from __future__ import annotations

import argparse
import json
import os
import sys

from corral.cli import project
from corral.errors import CorralError

_STARTER = {
    "service": """\
  cache:
    class: service            # restarted always; dependents can wait for it to be healthy
    command: python3 -m http.server 8765 --bind 127.0.0.1
    readiness:
      tcp: 8765
      period: 1s
""",
    "io": """\
  fetcher:
    class: io                 # restarted with backoff; keeps its state dir between runs
    command: >-
      python3 -c "import itertools, time;
      [print('fetched', i, flush=True) or time.sleep(2) for i in itertools.count()]"
    depends_on:
      cache: {condition: healthy}
""",
    "compute": """\
  report:
    class: compute            # runs to completion; its exit code is the result
    command: python3 -c "print('computed 42')"
""",
    "ai": """\
  assistant:
    class: ai                 # long stateful runs; give it the strongest isolation you have
    command: python3 -c "import time; print('thinking', flush=True); time.sleep(3600)"
""",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("init", help="write a starter corral.yaml")
    s.add_argument("--class", dest="classes", action="append",
                   choices=["compute", "io", "service", "ai"],
                   help="agent classes to include (repeat; default: all)")
    s.add_argument("--force", action="store_true", help="overwrite an existing file")
    s.set_defaults(handler=cmd_init)
    sub.add_parser("config", help="print the normalized manifest with defaults applied"
                   ).set_defaults(handler=cmd_config)
    sub.add_parser("schema", help="print the manifest's JSON Schema (for editors)"
                   ).set_defaults(handler=cmd_schema)


def cmd_init(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.file or os.path.join(project.directory() or "", "corral.yaml"))
    if os.path.exists(path) and not args.force:
        raise CorralError(f"{path} already exists", "use --force to overwrite it")
    classes = args.classes or ["service", "io", "compute", "ai"]
    if "io" in classes and "service" not in classes:
        classes = ["service", *classes]
    name = os.path.basename(os.path.dirname(path)).lower() or "fleet"
    name = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name).strip("-_")
    text = (f"# corral manifest: 'corral up' runs it, 'corral config' shows every default.\n"
            f"name: {name or 'fleet'}\nagents:\n")
    text += "".join(_STARTER[c] for c in ("service", "io", "compute", "ai") if c in classes)
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path}: edit it, then run 'corral up'")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from corral.manifest.schema import dump

    sys.stdout.write(dump(project.load(args.file)))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from corral.manifest.schema import json_schema

    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
