"""Finding the project a command is about, cheaply.

Commands that only talk to the daemon (``ps``, ``logs``, ``stop``…) need the state dir, not
the parsed manifest: it is ``<manifest dir>/.corral`` unless the manifest sets ``state_dir``,
which a one-line scan detects, so ``corral ps`` never pays for YAML and pydantic imports.
"""

from __future__ import annotations

import os
import re
import sys

from corral.errors import ManifestError, UsageError
from corral.manifest import files

TYPE_CHECKING = False  # not typing's: ``corral ps`` imports this module on every poll
if TYPE_CHECKING:
    from typing import Any

_STATE_DIR_KEY = re.compile(r"^(state_dir|project_dir)\s*:", re.MULTILINE)
_directory: list[str] = []  # --project-directory, absolute, once set


def use_directory(path: str) -> None:
    """``--project-directory``: the manifest is looked for there, and its relative paths (the
    state dir's among them) start there."""
    if not os.path.isdir(path):
        raise UsageError(f"--project-directory {path}: not a directory",
                          "pass an existing directory")
    _directory[:] = [os.path.abspath(path)]


def directory() -> str | None:
    return _directory[0] if _directory else None


def load(explicit: str | None) -> Any:
    """The project's manifest, loaded; its warnings (an unset ``$VAR``...) printed on stderr,
    each once, as compose prints them."""
    from corral.manifest.loader import load as load_file

    warnings: list[str] = []
    manifest = load_file(manifest_path(explicit), warnings=warnings, project_dir=directory())
    for line in warnings:
        print(f"WARN: {line}", file=sys.stderr)
    return manifest


def manifest_path(explicit: str | None) -> str:
    path = explicit or os.environ.get("CORRAL_FILE")
    if path:
        if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
            # /dev/zero, a FIFO: exit 2 in one line (a directory stays "not found")
            kind = files.kind(os.stat(path).st_mode)
            raise ManifestError([f"{kind}, not a regular file (pass a YAML file with -f)"],
                                path)
        if not os.path.isfile(path):
            raise UsageError(f"manifest not found: {path}",
                              "pass an existing file with -f or create one with 'corral init'")
        return os.path.abspath(path)
    base = directory()
    for name in ("corral.yaml", "corral.yml"):
        if os.path.isfile(found := os.path.join(base or "", name)):
            return os.path.abspath(found)
    where = f"in {base}" if base else "in this directory"
    raise UsageError(f"no corral.yaml {where}",
                      "create one with 'corral init' or pass -f FILE (or set CORRAL_FILE)")


def state_dir(explicit: str | None) -> str:
    path = manifest_path(explicit)
    if _STATE_DIR_KEY.search(head(path)):
        from corral.manifest.loader import load as load_file

        return load_file(path, project_dir=directory()).state_dir
    return os.path.join(directory() or os.path.dirname(path), ".corral")


def head(path: str) -> str:
    """The manifest's text for a cheap scan (lossy; the loader reports what is wrong)."""
    try:
        return files.read_bytes(path).decode("utf-8", errors="replace")
    except (OSError, files.Unreadable):
        return ""  # the loader, which runs next, words the problem
