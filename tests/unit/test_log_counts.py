"""The log sink's counts per level (``corral_log_lines_total``) agree with the records it
wrote, on every path: the fast path, runs of levels, JSON lines, stacks, pieces of long
lines, and a full disk that takes a write back."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from corral.logs.records import LEVELS, LineEncoder
from corral.logs.sink import AgentLog


def levels_on_disk(path: Path) -> list[int]:
    found = Counter(json.loads(line)["level"] for line in path.read_text().splitlines())
    return [found[level] for level in LEVELS]


def test_counts_match_the_records_written(tmp_path: Path) -> None:
    log = AgentLog(tmp_path, "web", max_line=200)
    out = log.writer("web.1")
    out.feed("stdout", b"plain one\nplain two\nplain three\n")  # the fast path
    out.feed("stdout", b"ok\nERROR broke\nERROR again\n[warn] low disk\nok\n")
    out.feed("stderr", b'{"level": "fatal", "msg": "gone"}\n{"severity": "debug"}\n{not json\n')
    out.feed("stderr", b"Traceback (most recent call last):\n  File \"x.py\", line 1, in <m>\n"
                       b"ValueError: bad\nafter the stack\n")
    out.feed("stdout", b"x" * 450 + b"\n")  # cut into partial pieces
    out.feed("stdout", b"caf\xc3\xa9 \xff INFO non-ascii\n")
    second = log.writer("web.2")  # another instance counts into the same agent's counts
    second.feed("stdout", b"WARNING from two\n")
    out.close()
    second.close()
    assert log.counts == levels_on_disk(log.path)
    assert log.counts[LEVELS.index("error")] == 3  # two ERROR lines and the stack
    assert log.counts[LEVELS.index("fatal")] == 1
    assert sum(log.counts) == len(log.path.read_text().splitlines())


def test_a_write_taken_back_is_not_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    log = AgentLog(tmp_path, "web")
    out = log.writer("web.1")
    out.feed("stdout", b"one\nERROR two\n")
    before = list(log.counts)

    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log, "write", full)
    with pytest.raises(OSError):
        out.feed("stdout", b"three\nERROR four\n")
    assert log.counts == before
    monkeypatch.undo()
    out.feed("stdout", b"three\nERROR four\n")  # offered again: counted once
    assert log.counts == levels_on_disk(log.path)


def test_a_plain_encoder_counts_for_itself() -> None:
    enc = LineEncoder("a", "a.1", "stdout")
    out: list[bytes | memoryview] = []
    enc.encode(b"one\ntwo\nERROR three\n", 0.0, out)
    assert enc.counts[LEVELS.index("info")] == 2
    assert enc.counts[LEVELS.index("error")] == 1
