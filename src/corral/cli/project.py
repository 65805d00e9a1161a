"""Finding the project a command is about, cheaply.

Commands that only talk to the daemon (``ps``, ``logs``, ``stop``…) need the state dir, not
the parsed manifest: it is ``<manifest dir>/.corral`` unless the manifest sets ``state_dir``,
which a one-line scan detects, so ``corral ps`` never pays for YAML and pydantic imports.
"""

from __future__ import annotations

import os
import re

from corral.errors import CorralError, ManifestError
from corral.manifest import files

_STATE_DIR_KEY = re.compile(r"^state_dir\s*:", re.MULTILINE)


def manifest_path(explicit: str | None) -> str:
    path = explicit or os.environ.get("CORRAL_FILE")
    if path:
        if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
            # /dev/zero, a FIFO: exit 2 in one line (a directory stays "not found")
            kind = files.kind(os.stat(path).st_mode)
            raise ManifestError([f"{kind}, not a regular file (pass a YAML file with -f)"],
                                path)
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
    if _STATE_DIR_KEY.search(head(path)):
        from corral.manifest.loader import load

        return load(path).state_dir
    return os.path.join(os.path.dirname(path), ".corral")


def head(path: str) -> str:
    """The manifest's text for a cheap scan (lossy; the loader reports what is wrong)."""
    try:
        return files.read_bytes(path).decode("utf-8", errors="replace")
    except (OSError, files.Unreadable):
        return ""  # the loader, which runs next, words the problem
