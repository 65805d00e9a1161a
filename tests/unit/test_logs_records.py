from __future__ import annotations

import json
import random

import pytest

from corral.logs.records import (
    LineEncoder,
    cut_point,
    encode_chunk,
    normalise_level,
    parse_level,
    scan,
    segments,
)

TS = 1732512345.123456
TS_TEXT = "2024-11-25T05:25:45.123456Z"  # how TS is written: RFC 3339, UTC


def encode(block: bytes, stream: str = "stdout") -> bytes:
    """Through the chunk paths (scan, fast path, runs)."""
    out: list[bytes | memoryview] = []
    LineEncoder("web", "web.1", stream).encode(block, TS, out)  # type: ignore[arg-type]
    return b"".join(out)


def reference(block: bytes, stream: str = "stdout") -> bytes:
    """Line by line through ``encode_line``, the definition of a record."""
    enc = LineEncoder("web", "web.1", stream)  # type: ignore[arg-type]
    lines = block.split(b"\n")[:-1]
    return b"".join(enc.encode_piece(line, TS, partial=False, merge=True) for line in lines)


def records(data: bytes) -> list[dict[str, object]]:
    text = data.decode()
    assert len(text.splitlines()) == text.count("\n")  # no U+2028 etc. left raw
    return [json.loads(line) for line in text.split("\n")[:-1]]


PLAIN = [
    b"2024-11-25T10:00:00Z worker-3 handled request id=12 path=/api took 12ms",
    b"",
    b"Connected to db at 10.0.0.1:5432 (pool=4)",
    b"retry in 3s; model=gpt-4 key=k1 url=http://x/y?q=1",
    b"some Error Text and info and warnings in prose, errors=0",
    b"   indented {not json at start} [main] done",
    b"\x7f delete char is fine",
]


def test_plain_lines_take_the_fast_path_and_match_the_slow_path_exactly() -> None:
    block = b"\n".join(PLAIN) + b"\n"
    assert scan(block).fast
    fast = encode(block)
    assert fast == reference(block)
    recs = records(fast)
    assert [r["message"] for r in recs] == [line.decode() for line in PLAIN]
    assert {r["level"] for r in recs} == {"info"}
    assert recs[0] == {
        "timestamp": TS_TEXT,
        "agent": "web",
        "instance": "web.1",
        "stream": "stdout",
        "level": "info",
        "message": PLAIN[0].decode(),
    }
    # stderr says no level by itself (progress, access lines): info, told apart by its stream
    assert {(r["level"], r["stream"]) for r in records(encode(block, "stderr"))} == {
        ("info", "stderr")}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'say "hi"', "quote"),
        (b"back\\slash", "backslash"),
        (b"tab\there", "control"),
        (b"crlf\r", "control"),
        (b"caf\xc3\xa9", "non-ascii"),
        (b"{}", "json"),
        (b"ERROR: x", "level"),
        (b"x [warning] y", "level"),
        (b"ts=1 level=warn", "level"),
        (b"a severity=debug", "level"),
        (b"fatal: not a git repository", "level"),
        (b"Warning: low disk", "level"),
        (b"boom CRITICAL", "level"),
    ],
)
def test_scan_sends_lines_needing_work_to_the_slow_path(line: bytes, reason: str) -> None:
    block = b"plain line\n" * 50 + line + b"\n" + b"plain line\n" * 50
    assert not scan(block).fast, reason
    assert not scan(line + b"\n").fast


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("ERROR something broke", "error"),
        ("2024-01-01 12:00:00 WARN disk", "warn"),
        ("[warning] low memory", "warn"),
        ("[ Error ] x", "error"),
        ("ts=3 level=error msg=x", "error"),
        ("lvl=debug", "debug"),
        ("severity='warning'", "warn"),
        ("CRITICAL: on fire", "fatal"),
        ("PANIC", "fatal"),
        ("DEBUG x", "debug"),
        ("TRACE x", "debug"),
        ("INFO later ERROR", "info"),  # the first level word wins
        ("error: cannot open", "error"),
        ("Warning: deprecated", "warn"),
        ("an error: in prose", None),
        ("errors=0 warnings=1", None),
        ("ERRORS happen", None),
        ("xERROR", None),
        ("loglevel=error", None),
        ("information", None),
        ("", None),
    ],
)
def test_parse_level(text: str, level: str | None) -> None:
    assert parse_level(text) == level


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("WARNING", "warn"),
        ("err", "error"),
        ("Critical", "fatal"),
        ("verbose", "debug"),
        (30, "info"),
        (40, "warn"),
        (50, "error"),
        (60, "fatal"),
        (10, "debug"),
        ("nonsense", None),
        (True, None),
        (None, None),
    ],
)
def test_normalise_level(value: object, level: str | None) -> None:
    assert normalise_level(value) == level


def test_escaping_round_trips_every_line() -> None:
    lines = [
        b'quote " and backslash \\ and \\n literal',
        bytes(range(1, 10)) + bytes(range(11, 32)) + b"\x7f",
        "unicode: caf\u00e9 \u4e2d\u6587 \U0001f600 \u2028 \u2029 \x85".encode(),
        b"invalid \xff\xfe utf8 \xe2\x82 truncated",
        b"nul \x00 byte",
        b"crlf line\r",
    ]
    recs = records(encode(b"\n".join(lines) + b"\n"))
    expected = [line.decode("utf-8", "replace").removesuffix("\r") for line in lines]
    assert [r["message"] for r in recs] == expected


def test_json_lines_are_merged() -> None:
    line = {
        "msg": "started",
        "level": "WARNING",
        "ts": 5,
        "time": "t",
        "timestamp": 7,
        "agent": "theirs",
        "port": 8080,
        "nested": {"a": [1, 2]},
    }
    block = json.dumps(line).encode() + b"\n" + b'{"message": "m", "msg": "kept", "severity": 50}\n'
    first, second = records(encode(block))
    assert first == {
        "timestamp": TS_TEXT,
        "agent": "web",
        "instance": "web.1",
        "stream": "stdout",
        "level": "warn",
        "message": "started",
        "ts": 5,
        "time": "t",
        "timestamp_extracted": 7,
        "agent_extracted": "theirs",
        "port": 8080,
        "nested": {"a": [1, 2]},
    }
    assert second["message"] == "m" and second["msg"] == "kept" and second["level"] == "error"


@pytest.mark.parametrize(
    ("line", "expect"),
    [
        (b'{"level": "loud", "message": "x"}', {"level": "info", "level_extracted": "loud"}),
        (b'{"event": "no message"}', {"message": "", "event": "no message", "level": "info"}),
        (b'{"msg": "ERROR in message"}', {"level": "error"}),
        (b'{"msg": {"structured": 1}}', {"message": '{"structured":1}'}),
        (b'{"partial": 1, "big": 1e999}', {"message": '{"partial": 1, "big": 1e999}'}),
        (b'{"partial": 1}', {"partial_extracted": 1}),
        (b'{"msg": [1e999]}', {"message": '{"msg": [1e999]}'}),
    ],
)
def test_json_line_corner_cases(line: bytes, expect: dict[str, object]) -> None:
    (rec,) = records(encode(line + b"\n"))
    assert {k: rec[k] for k in expect} == expect


@pytest.mark.parametrize(
    "line", [b"{not json}", b"[1, 2]", b'{"a": NaN}', b"{" * 100000, b'{"a":1']
)
def test_non_object_lines_starting_with_a_brace_stay_text(line: bytes) -> None:
    (rec,) = records(encode(line + b"\n"))
    assert rec["message"] == line.decode()


ODD = [
    b"plain words", b" ", b'"', b"\\", b"\t", b"\r", b"\x1b[31m", b"\xc3\xa9", b"\xff",
    b"\xe2\x82", "\x80".encode(), b"\r\r", "\u2028".encode(), b"ERROR", b"ERRORS", b"xINFO",
    b"WARNING_", b"[warn]", b"[ Info ]", b"level=debug", b"xlevel=error", b"severity='fatal'",
    b"{", b"}", b":", b"=", b"l", b"y", b"v", b"]", b"Warning:", b"fatal:", b"errors:",
    b'{"msg": "j", "level": "error"}', b'{"message": "ERROR in json"}', b"{}", b"DEBUG",
]  # fmt: skip


@pytest.mark.parametrize("density", [0.0005, 0.01, 0.2, 1.0])
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_chunk_paths_equal_line_by_line_encoding(density: float, stream: str) -> None:
    """Big blocks mixing plain and odd lines: the chunk paths (fast path, level runs,
    escaped runs) must give exactly what encoding each line on its own gives."""
    rng = random.Random(f"{density}{stream}")
    plain = b"2024-11-25T10:00:00Z worker handled request took 12ms".ljust(99, b".")

    def odd() -> bytes:
        return b"".join(rng.choice(ODD) for _ in range(rng.randint(0, 6)))

    lines = [odd() if rng.random() < density else plain for _ in range(6000)]
    block = b"\n".join(lines) + b"\n"
    expected = reference(block, stream)
    assert encode(block, stream) == expected
    assert len(records(expected)) == len(lines)


def test_encode_chunk_helper() -> None:
    data = encode_chunk("web", "web.1", "stderr", b"a\nb", TS)
    assert [r["message"] for r in records(data)] == ["a", "b"]
    assert encode_chunk("web", "web.1", "stderr", b"", TS) == b""


def test_segments_finds_only_long_lines() -> None:
    block = b"a\n" + b"x" * 30 + b"\nbb\n" + b"y" * 10 + b"\n"
    expected = [(False, b"a\n"), (True, b"x" * 30), (False, b"bb\n" + b"y" * 10 + b"\n")]
    assert segments(block, 10) == expected
    short = b"abc\n" * 100
    assert segments(short, 10) == [(False, short)]


def test_cut_point_respects_utf8_and_secrets() -> None:
    text = "\u00e9" * 10  # 2 bytes each
    assert cut_point(text.encode(), 5, ()) == 4
    assert cut_point(b"x" * 20, 10, ()) == 10
    assert cut_point(b"aaaaaSECRETbbbb", 8, (b"SECRET",)) == 5
    assert cut_point(b"aaaaaaaSEC", 8, (b"SECRET",)) == 7  # may be a secret's start
    assert cut_point(b"aaaaaaaSEX", 8, (b"SECRET",)) == 8


@pytest.mark.parametrize(
    "word", [b"ERR", b"ERROR", b"WARN", b"WARNING", b"INFO", b"DEBUG", b"FATAL", b"CRIT",
             b"CRITICAL", b"TRACE", b"PANIC", b"NOTICE"],
)  # fmt: skip
def test_scan_finds_level_words_among_other_capitals(word: bytes) -> None:
    """The scan looks for stems only when all their letters are in the block: a block full
    of other capitals (the benchmark's ``#SPAM#`` lines) must still find the one level word."""
    spam = b"#SPAM# 0001234 000000001 PA AP PAPA NOPE " + b"x" * 40
    assert scan(spam + b"\n").fast
    block = (spam + b"\n") * 300 + b"t=1 " + word + b" x\n" + (spam + b"\n") * 300
    assert scan(block).levels
    assert encode(block) == reference(block)


def test_scan_says_where_a_traceback_may_start() -> None:
    assert scan(b"ok\nTraceback (most recent call last):\n").stack
    assert scan(b"Exception Group Traceback (most recent call last):\n").stack
    assert not scan(b"GET /items (cache miss) took 3ms\n").stack
    assert scan(b"plain line\n").fast  # a possible stack does not leave the fast path


def test_scan_says_where_a_java_node_or_go_stack_may_start() -> None:
    assert scan(b"java.lang.IllegalStateException: boom\n\tat a.B.c(B.java:1)\n").stack
    assert scan(b"TypeError: x\n    at fn (/app/x.js:1:2)\n").stack
    assert scan(b"panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/a.go:1 +0x1\n").stack
    assert not scan(b"    at the edge\n").stack  # no "(": no Node.js frame
    assert not scan(b"the goroutine count is 3\n\tqueue\n").stack  # not at a line start
    assert scan(b"TypeError: x\n").fast and not scan(b"TypeError: x\n").stack  # a head alone
    assert scan(b"TypeError: x\n").head and scan(b"panic: boom\n").head  # stacks.held_head looks
    assert not scan(b"2026-12-02T14:03:05Z worker-3 handled request\n").head
