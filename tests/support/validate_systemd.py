"""``check_systemd(directory)``: ``systemd-analyze verify`` over an export's units, offline.

Template units cannot be verified as such, so each is verified as its first instance
(``NAME@1.service``), with the export's ``units/`` dir as the only unit search path
(``SYSTEMD_UNIT_PATH``, with a trailing ``:`` for the built-in units such as
``multi-user.target``). ``--man=no`` skips the man page look-ups of ``Documentation=``;
``verify`` checks that every ``Exec*=`` program exists, so a unit naming a missing binary
fails here as it would at start."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def systemd_analyze() -> str:
    program = shutil.which("systemd-analyze")
    if program is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt install systemd)")
    return program


def _names(units: str) -> list[str]:
    out = []
    for entry in sorted(os.listdir(units)):
        if "@." in entry:
            base, _, kind = entry.rpartition(".")
            out.append(f"{base}1.{kind}")
        elif entry.endswith((".service", ".target", ".timer")):
            out.append(entry)
    return out


def check_systemd(directory: str, *, newer_keys: tuple[str, ...] = ()) -> str:
    """Verify every unit under ``directory/units`` (or ``directory`` itself); fails the test
    with systemd's words on any problem. ``newer_keys``: settings of a newer systemd than
    this host's (an export for ``--set systemd-version=N``), whose "Unknown key" lines are
    allowed. Returns what it printed."""
    units = os.path.join(directory, "units")
    if not os.path.isdir(units):
        units = directory
    names = _names(units)
    assert names, f"no units in {units}"
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:", "SYSTEMD_LOG_LEVEL": "notice"}
    done = subprocess.run([systemd_analyze(), "verify", "--man=no", *names], cwd=units,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    text = done.stdout + done.stderr
    problems = [line for line in text.splitlines() if line.strip() and not any(
        f"Unknown key '{key}'" in line for key in newer_keys)]
    assert done.returncode == 0 and not problems, f"systemd-analyze verify:\n{text}"
    return text


_C_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


def exec_argv(line: str) -> list[str]:
    """The argv systemd makes of an ``Exec*=`` value (systemd.syntax(7)): words split on
    blanks, double quotes with C escapes, ``$$`` and ``%%`` as one character. Enough to run an
    exported command line in a test; specifiers other than ``%%`` are not expanded."""
    words: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        word, quoted = [], line[i] == '"'
        i += quoted
        while i < n and (quoted or not line[i].isspace()):
            c = line[i]
            if quoted and c == '"':
                i += 1
                break
            if c == "\\" and i + 1 < n:
                word.append(_C_ESCAPES.get(line[i + 1], line[i + 1]))
                i += 2
                continue
            if c in "$%" and line[i + 1:i + 2] == c:
                i += 1
            word.append(c)
            i += 1
        words.append("".join(word))
    return words
