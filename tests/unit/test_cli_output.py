"""What people read is safe to read: an agent's text never acts on the terminal."""

from __future__ import annotations

import pytest

from corral.cli import render


@pytest.mark.parametrize(("text", "shown"), [
    ("plain text, tabs\tand ünïcødé ✓ 👩‍💻", "plain text, tabs\tand ünïcødé ✓ 👩‍💻"),
    ("\x1b]0;title\x07", r"\x1b]0;title\x07"),
    ("\x1b[2J\x1b[H", r"\x1b[2J\x1b[H"),
    ("over\rwrite", r"over\x0dwrite"),
    ("web.2 | fine\nweb.1 | fake", r"web.2 | fine\x0aweb.1 | fake"),
    ("\x00\x08\x7f", r"\x00\x08\x7f"),
    ("\x9b2J\x9d0;t\x9c\x85", r"\x9b2J\x9d0;t\x9c\x85"),
    ("abc\u202edef\u2066x\u2069\u2028", r"abc\u202edef\u2066x\u2069\u2028"),
    ("lone \ud800 surrogate", r"lone \ud800 surrogate"),
])
def test_control_characters_are_escaped(text: str, shown: str) -> None:
    assert render.printable(text) == shown
    assert render.printable(text).encode()  # always writable as UTF-8


def test_log_and_state_lines_escape_what_agents_wrote() -> None:
    rec = {"instance": "web.1", "message": "\x1b]0;pwned\x07hi", "level": "error"}
    line = render.format_line(rec, width=6, color=True)
    assert line.endswith("\x1b[31m\\x1b]0;pwned\\x07hi\x1b[0m")  # colours ours, text escaped
    assert render.format_line(rec, width=6, color=False, raw=True) == "web.1  | " + rec[
        "message"]
    event = {"name": "web.1", "state": "fatal", "reason": "exited: \x1b[2J"}
    assert "\x1b[2J" not in render.state_line(event, width=6, color=False)
    row = {"name": "web.1", "state": "fatal", "pid": None, "reason": "bad\x1b[2J",
           "exit_code": 1, "exit_signal": None, "uptime": None, "restarts": 0,
           "health": "none", "limits": None}
    assert "\x1b" not in render.table([row], color=False)
    assert "\x1b" not in render.summary_line(row)


def test_log_lines_show_the_agents_own_fields_and_the_time() -> None:
    rec = {"timestamp": "2026-12-02T14:03:05.123456Z", "agent": "web", "instance": "web.1",
           "stream": "stdout", "level": "error", "message": "boom", "code": 3, "who": "me",
           "tags": ["a"]}
    shown = render.format_line(rec, width=7, color=False)
    assert shown == 'web.1   | boom code=3 who=me tags=["a"]'
    coloured = render.format_line(rec, width=7, color=True)
    assert "\x1b[31mboom code=3 who=me" in coloured
    assert render.format_line({**rec, "message": ""}, width=0, color=False).startswith(
        "web.1 | code=3")
    stamped = render.format_line(rec, width=5, color=False, timestamps=True)
    assert stamped.startswith("web.1 | 2026-12-02T14:03:05.123456Z boom")
    old = {**rec, "timestamp": 1_700_000_000.5}  # files from before the RFC 3339 form
    assert "2023-11-14T22:13:20.500000Z boom" in render.format_line(
        old, width=5, color=False, timestamps=True)
    forged = {**rec, "who": "x\x1b[2J"}
    assert "\x1b[2J" not in render.format_line(forged, width=5, color=False)


def test_a_traceback_is_shown_line_by_line_each_with_its_prefix() -> None:
    rec = {"instance": "job.1", "level": "error",
           "message": "Traceback (most recent call last):\n  File \"x\"\nValueError: web.2 | fake"}
    assert render.format_line(rec, width=5, color=False).splitlines() == [
        "job.1 | Traceback (most recent call last):", 'job.1 |   File "x"',
        "job.1 | ValueError: web.2 | fake"]
