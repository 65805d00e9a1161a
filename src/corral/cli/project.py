"""Finding the project a command is about, cheaply.

Commands that only talk to the daemon (``ps``, ``logs``, ``stop``…) need the state dir, not
the parsed manifest: it is ``<manifest dir>/.corral`` unless the manifest sets ``state_dir``,
which a one-line scan detects, so ``corral ps`` never pays for YAML and pydantic imports.
"""

from __future__ import annotations

import os
import re

from corral.errors import CorralError

_STATE_DIR_KEY = re.compile(r"^state_dir\s*:", re.MULTILINE)


def manifest_path(explicit: str | None) -> str:
    path = explicit or os.environ.get("CORRAL_FILE")
    if path:
        if not os.path.isfile(path):
            raise CorralError(f"manifest not found: {path}",
                              "pass an existing file with -f or create one with 'corral init'")
        return os.path.abspath(path)
    for name in ("corral.yaml", "corral.yml"):
        if os.path.isfile(name):
            return os.path.abspath(name)
    raise CorralError("no corral.yaml in this directory",
                      "create one with 'corral init' or pass -f FILE (or set CORRAL_FILE)")


def state_dir(explicit: str | None) -> str:
    path = manifest_path(explicit)
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if _STATE_DIR_KEY.search(text):
        from corral.manifest.loader import load

        return load(path).state_dir
    return os.path.join(os.path.dirname(path), ".corral")
