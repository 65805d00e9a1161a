"""``corral logs`` on a real terminal (a pty): an agent's escape sequences are shown escaped,
never obeyed; the store and ``--json`` keep the raw bytes; ``--raw`` writes them as they are."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time

import pytest

from tests.e2e.conftest import CORRAL, Project

pytestmark = pytest.mark.e2e

# an OSC title, a clear screen, a CR that would overwrite the line, BEL, backspace, DEL, the
# C1 CSI in its UTF-8 form (C2 9B) and a right-to-left override (E2 80 AE)
EVIL = r"\033]0;pwned\007\033[2Jsafe\rX\010\177\302\2332J \342\200\256txt"
RAW = "\x1b]0;pwned\x07\x1b[2Jsafe\rX\x08\x7f\x9b2J \u202etxt"
SHOWN = r"\x1b]0;pwned\x07\x1b[2Jsafe\x0dX\x08\x7f\x9b2J \u202etxt"
SGR = re.compile(rb"\x1b\[[0-9;]*m")  # corral's own colours on a terminal


def on_pty(project: Project, *args: str, until: bytes, timeout: float = 20) -> bytes:
    """What ``corral ARGS`` writes to a terminal, read until ``until`` shows (then it is
    stopped, for ``-f``) or it exits."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*CORRAL, "-f", str(project.manifest), *args], cwd=project.root,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            env={k: v for k, v in os.environ.items() if k != "NO_COLOR"})
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while until not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal: it has exited
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(10)
        os.close(master)
    return out


def test_escape_sequences_are_shown_escaped_on_a_terminal(project: Project) -> None:
    project.write(f"""
        name: ttylogs
        agents:
          evil:
            command: sh -c 'printf "{EVIL}\\n"; sleep 300'
    """)
    project.corral("up", "-d")
    project.wait_for(lambda _: any(r.get("message") == RAW for r in project.records("evil")),
                     what="the record")
    shown = on_pty(project, "logs", "evil", until=b"txt")
    assert SHOWN.encode() in shown, shown
    assert b"\x1b" not in SGR.sub(b"", shown), shown  # no ESC but corral's own colours
    for obeyed in (b"\x07", b"\x08", b"\x7f", b"\xc2\x9b", "\u202e".encode(), b"pwned\r"):
        assert obeyed not in shown, (obeyed, shown)
    assert b"\x1b[" in shown  # it is a terminal: the prefix is coloured

    followed = on_pty(project, "logs", "-f", "--tail", "1", "evil", until=b"txt")
    assert SHOWN.encode() in followed and b"\x1b]" not in followed, followed

    # the store and --json keep the agent's bytes as they were
    assert RAW in [r["message"] for r in project.records("evil")]
    as_json = project.corral("logs", "--json", "evil").stdout.splitlines()
    assert RAW in [json.loads(line)["message"] for line in as_json]
    # piped, the text is escaped too (as journalctl does); --raw writes the bytes
    assert SHOWN in project.corral("logs", "--no-color", "evil").stdout
    raw = on_pty(project, "logs", "--raw", "--no-color", "evil", until=b"txt")
    assert RAW.encode() in raw, raw
