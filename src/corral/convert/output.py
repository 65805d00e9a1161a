"""Writing an export's files to its directory, or to stdout.

The directory is the user's, so it is handled with care: a file list (``MARKER``) records what
the last export wrote there, and the next export of the same format removes those files first
(a removed agent's unit does not linger), but never a file it did not write. A directory that
holds other files and no marker is refused unless ``force``. Paths are checked (relative, no
``..``) and nothing is written through a symbolic link."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from corral.convert.base import Bundle
from corral.errors import CorralError

MARKER = ".corral-export"


def _checked(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise AssertionError(f"an exporter made a bad path: {path!r}")
    return path


def _previous(directory: str, kind: str) -> list[str] | None:
    """The files the last export wrote here, or None when no export wrote here."""
    try:
        with open(os.path.join(directory, MARKER), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    if not lines or lines[0] != f"# {kind}":
        raise CorralError(f"{directory} holds another export ({lines[0][2:] if lines else '?'})",
                          "export each format to a directory of its own (--out DIR)")
    return [_checked(p) for p in lines[1:] if p]


def write(bundle: Bundle, directory: str, *, kind: str, force: bool = False) -> list[str]:
    """Write ``bundle`` under ``directory`` (made when missing); the paths written."""
    try:
        os.makedirs(directory, exist_ok=True)
        previous = _previous(directory, kind)
        if previous is None and any(e != MARKER for e in os.listdir(directory)) and not force:
            raise CorralError(f"{directory} is not empty and no export wrote there",
                              "give an empty or new --out DIR, or --force to write among "
                              "its files")
        for old in previous or []:
            target = os.path.join(directory, old)
            if old not in bundle.files and os.path.lexists(target) and not os.path.isdir(
                    target):
                os.unlink(target)
        written = []
        for path, text in sorted(bundle.files.items()):
            target = os.path.join(directory, _checked(path))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.islink(target):
                os.unlink(target)
            mode = 0o755 if path in bundle.executable else 0o644
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(target, mode)
            written.append(target)
        with open(os.path.join(directory, MARKER), "w", encoding="utf-8") as f:
            f.write("\n".join([f"# {kind}", *sorted(bundle.files)]) + "\n")
    except OSError as exc:
        raise CorralError(f"cannot write the export to {directory}: {exc.strerror}",
                          "give a writable --out DIR with free space") from None
    return written


def show(bundle: Bundle, out: TextIO = sys.stdout) -> None:
    """Every file to ``out``: one alone as it is; several each after a ``# file: PATH`` line
    (a YAML stream stays one stream: its files are documents). Files outside the bundle's
    ``stream`` come last, every line a comment, so the stream still reads as its format."""
    if len(bundle.files) == 1:
        out.write(next(iter(bundle.files.values())))
        return
    stream = bundle.stream if bundle.stream is not None else sorted(bundle.files)
    for path in stream:
        text = bundle.files[path]
        sep = "---\n" if path.endswith((".yaml", ".yml")) else ""
        out.write(f"{sep}# file: {path}\n{text}")
        if not text.endswith("\n"):
            out.write("\n")
    for path in sorted(set(bundle.files) - set(stream)):
        out.write(f"# file: {path}\n")
        out.writelines(f"# {line}".rstrip() + "\n" for line in bundle.files[path].splitlines())
