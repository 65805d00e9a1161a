from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from corral.logs.sink import AgentLog, InstanceOutput, bench_sink


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def read(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().split(b"\n")[:-1]]


def messages(path: Path, stream: str | None = None) -> list[object]:
    return [r["message"] for r in read(path) if stream is None or r["stream"] == stream]


@pytest.fixture
def log(tmp_path: Path) -> AgentLog:
    return AgentLog(tmp_path, "web", clock=Clock())


def test_records_are_on_disk_when_feed_returns(log: AgentLog) -> None:
    out = log.writer("web.1")
    out.feed("stdout", b"one\ntwo\n")
    assert log.path == log.directory / "web.log"
    assert messages(log.path) == ["one", "two"]  # not closed, not flushed: already there
    rec = read(log.path)[0]
    assert rec == {
        "timestamp": "1970-01-12T13:46:40.000000Z",  # RFC 3339, UTC, microseconds
        "agent": "web",
        "instance": "web.1",
        "stream": "stdout",
        "level": "info",
        "message": "one",
    }


def test_each_chunk_gets_its_own_timestamp(tmp_path: Path) -> None:
    clock = Clock(10.0)
    out = AgentLog(tmp_path, "web", clock=clock).writer("web.1")
    out.feed("stdout", b"a\nb\n")
    clock.now = 11.5
    out.feed("stdout", b"c\n")
    assert [r["timestamp"] for r in read(tmp_path / "web.log")] == [
        "1970-01-01T00:00:10.000000Z", "1970-01-01T00:00:10.000000Z",
        "1970-01-01T00:00:11.500000Z"]


def test_torn_lines_are_joined_per_stream(log: AgentLog) -> None:
    out = log.writer("web.1")
    out.feed("stdout", b"hel")
    out.feed("stderr", b"oo")
    out.feed("stdout", b"lo\nwor")
    out.feed("stderr", b"ps\nfail")
    assert out.pending() == {"stdout": b"wor", "stderr": b"fail"}
    out.feed("stdout", b"ld\n")
    assert messages(log.path, "stdout") == ["hello", "world"]
    assert messages(log.path, "stderr") == ["oops"]
    out.eof("stderr")
    out.eof("stdout")  # nothing pending: no record
    assert messages(log.path, "stderr") == ["oops", "fail"]
    assert [r["level"] for r in read(log.path) if r["stream"] == "stderr"] == ["info", "info"]
    assert out.pending() == {}


def test_torn_json_line_is_merged_once_complete(log: AgentLog) -> None:
    out = log.writer("web.1")
    out.feed("stdout", b'{"msg": "ready", ')
    out.feed("stdout", b'"level": "debug"}\n')
    (rec,) = read(log.path)
    assert rec["message"] == "ready" and rec["level"] == "debug"


def test_long_lines_are_split_the_same_however_they_arrive(tmp_path: Path) -> None:
    line = ("\u00e9" * 30 + "x" * 7).encode()  # 67 bytes, 2-byte characters
    whole = AgentLog(tmp_path, "a", max_line=16, clock=Clock())
    whole.writer("a.1").feed("stdout", b"short\n" + line + b"\nafter\n")
    torn = AgentLog(tmp_path, "b", max_line=16, clock=Clock())
    out = torn.writer("b.1")
    out.feed("stdout", b"short\n")
    for i in range(0, len(line), 5):
        out.feed("stdout", line[i : i + 5])
    out.feed("stdout", b"\nafter\n")
    recs = read(whole.path)
    assert recs == [{**r, "agent": "a", "instance": "a.1"} for r in read(torn.path)]
    pieces = recs[1:-1]
    assert all(len(str(r["message"]).encode()) <= 16 for r in pieces)
    assert "".join(str(r["message"]) for r in pieces) == line.decode()  # no char torn
    assert [r.get("partial", False) for r in recs] == [False] + [True] * (len(pieces) - 1) + [
        False,
        False,
    ]


def test_redaction_inside_chunks_across_chunks_and_in_long_lines(tmp_path: Path) -> None:
    log = AgentLog(tmp_path, "web", max_line=20, clock=Clock())
    out = log.writer("web.1")
    out.redact(["s3cr3t-token", ""])
    lines: list[bytes] = []
    out.line_listeners.append(lambda stream, data: lines.append(data))
    out.feed("stdout", b"t=s3cr3t-token ok\n")
    out.feed("stdout", b"x s3cr3t-")
    out.feed("stdout", b"token y\n")
    out.feed("stderr", b"0123456789abcs3cr3t-token-and-more\n")  # the cut at 20 would split it
    out.feed("stderr", b"0123456789abcdefgs3cr")  # past max_line while the secret is incomplete
    out.feed("stderr", b"3t-token\n")
    text = log.path.read_bytes()
    assert b"s3cr3t" not in text and b"s3cr3t" not in b"".join(lines)
    assert messages(log.path, "stdout") == ["t=*** ok", "x *** y"]
    assert "".join(map(str, messages(log.path, "stderr"))).count("***") == 2


def test_tail_file_keeps_torn_lines_across_a_restart(tmp_path: Path) -> None:
    tail_file = tmp_path / "web.1.tail"
    log = AgentLog(tmp_path, "web", clock=Clock())
    out = log.writer("web.1", tail_file=tail_file)
    out.redact(["hunter22"])
    out.feed("stdout", b"done\nhalf a li")
    out.feed("stderr", b"pw hunter22 and tr")
    assert tail_file.exists() and b"hunter22" not in tail_file.read_bytes()
    log.close()  # the daemon dies here
    log2 = AgentLog(tmp_path, "web", clock=Clock())
    again = log2.writer("web.1", tail_file=tail_file)
    assert again.restore_from_tail_file() == {"stdout": b"half a li", "stderr": b"pw *** and tr"}
    again.feed("stdout", b"ne\n")
    again.feed("stderr", b"uncated\n")
    assert messages(log2.path) == ["done", "half a line", "pw *** and truncated"]
    assert again.pending() == {}
    assert InstanceOutput(log2, "web.1", tail_file=tail_file).restore_from_tail_file() == {}


DAMAGED = [b"", b"CRT1", b"XXXX\x01\0\0\0\0\0\0\0a", b"CRT1\xff\0\0\0\0\0\0\0"]


@pytest.mark.parametrize("content", DAMAGED)
def test_damaged_or_missing_tail_file_restores_nothing(log: AgentLog, content: bytes) -> None:
    tail_file = log.directory / "t"
    if content:
        tail_file.write_bytes(content)
    assert log.writer("web.1", tail_file=tail_file).restore_from_tail_file() == {}
    assert log.writer("web.1").restore_from_tail_file() == {}


def test_restore_continues_a_torn_line(log: AgentLog) -> None:
    out = log.writer("web.1")
    out.restore({"stdout": b"con"})
    out.feed("stdout", b"tinued\n")
    assert messages(log.path) == ["continued"]


def test_subscribers_get_exactly_what_is_written(log: AgentLog) -> None:
    seen: list[bytes] = []
    unsubscribe = log.subscribe(seen.append)
    out = log.writer("web.1")
    out.feed("stdout", b"a\n" * 3000 + b'odd "line"\n' + b"b\n" * 3000)
    out.feed("stderr", b"c\n")
    assert b"".join(seen) == log.path.read_bytes()
    unsubscribe()
    unsubscribe()
    out.feed("stdout", b"d\n")
    assert len(seen) == 2


def test_line_listeners_get_raw_complete_lines(log: AgentLog) -> None:
    out = log.writer("web.1")
    out.feed("stdout", b"before anyone listens\n")
    got: list[tuple[str, bytes]] = []
    stop = out.listen_lines(lambda stream, data: got.append((stream, data)))
    out.feed("stdout", b'{"msg": "x"}\nready on :80')
    out.feed("stdout", b"80\n")
    out.feed("stderr", b"no newline")
    out.eof("stderr")
    assert got == [
        ("stdout", b'{"msg": "x"}\n'),
        ("stdout", b"ready on :8080\n"),
        ("stderr", b"no newline\n"),
    ]
    stop()
    stop()
    out.feed("stdout", b"unheard\n")
    assert len(got) == 3 and out.line_listeners == []


def test_rotation_by_size_keeps_count(tmp_path: Path) -> None:
    log = AgentLog(tmp_path, "web", max_size=1000, keep=2, clock=Clock())
    out = log.writer("web.1")
    for i in range(40):
        out.feed("stdout", f"line {i:03d}\n".encode())
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["web.log", "web.log.1", "web.log.2"]
    assert all(p.stat().st_size < 1000 + 200 for p in tmp_path.iterdir())
    kept = [m for name in ("web.log.2", "web.log.1", "web.log") for m in messages(tmp_path / name)]
    assert kept == [f"line {i:03d}" for i in range(40 - len(kept), 40)]  # newest, in order


def test_rotation_keep_zero_and_reopen_appends(tmp_path: Path) -> None:
    log = AgentLog(tmp_path, "web", max_size=160, keep=0, clock=Clock())
    log.writer("web.1").feed("stdout", b"x" * 200 + b"\n")
    assert [p.name for p in tmp_path.iterdir()] == ["web.log"]
    assert log.path.stat().st_size == 0
    log.writer("web.1").feed("stdout", b"y\n")
    log.close()
    AgentLog(tmp_path, "web", clock=Clock()).writer("web.1").feed("stdout", b"z\n")
    assert messages(tmp_path / "web.log") == ["y", "z"]


def test_retention_by_age(tmp_path: Path) -> None:
    clock = Clock(10_000.0)
    for n, age in ((1, 10), (2, 500), (3, 5000)):
        path = tmp_path / f"web.log.{n}"
        path.write_bytes(b"")
        os.utime(path, (clock.now - age, clock.now - age))
    log = AgentLog(tmp_path, "web", max_age=1000, clock=clock)  # prunes at open
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web.log", "web.log.1", "web.log.2"]
    clock.now += 600  # .2 is now 1100 s old
    log.prune()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web.log", "web.log.1"]
    log.rotate()  # rotation prunes too; the fresh .1 (just written) stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web.log", "web.log.1", "web.log.2"]


def test_closed_log_refuses_writes(log: AgentLog) -> None:
    out = log.writer("web.1", tail_file=log.directory / "t")
    out.feed("stdout", b"x")
    log.close()
    log.close()
    with pytest.raises(ValueError, match="closed"):
        out.feed("stdout", b"\n")


def test_bench_sink_runs_and_prints(capsys: pytest.CaptureFixture[str]) -> None:
    rate = bench_sink(lines=40_000, agents=2, chunk_size=64 * 1024)
    assert rate > 0
    assert "lines/s" in capsys.readouterr().out


def test_any_chunking_gives_the_records_of_the_whole(tmp_path: Path) -> None:
    """Chunk boundaries anywhere (inside a line, a JSON line, a UTF-8 character, right after
    a newline) give the records feeding everything at once gives: the torn tail is joined
    with the next chunk, never lost, doubled or split into two records."""
    import random

    lines = [
        b"#SPAM# 0001234 000000001 " + b"x" * 74,
        b'{"msg": "ready", "level": "warn", "n": 1}',
        "caf\u00e9 \u20ac \U0001f600 done".encode(),
        b"ERROR: disk full",
        b"",
        b"plain after blank",
    ]
    data = b"\n".join(lines * 40) + b"\n"
    whole = AgentLog(tmp_path, "whole", clock=Clock())
    whole.writer("i").feed("stdout", data)
    rng = random.Random(7)
    for trial in range(5):
        torn = AgentLog(tmp_path, f"torn{trial}", clock=Clock())
        out = torn.writer("i")
        cuts = sorted(rng.sample(range(1, len(data)), 60))
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            out.feed("stdout", data[start:end])
        assert out.pending() == {}
        expected = [{**r, "agent": f"torn{trial}"} for r in read(whole.path)]
        assert read(torn.path) == expected


TRACEBACK = (b'Traceback (most recent call last):\n  File "job.py", line 3, in <module>\n'
             b"    main()\nValueError: boom\n")
HEAD = TRACEBACK[: TRACEBACK.index(b"    main()")]  # the first lines: an unfinished traceback


def test_a_traceback_is_one_error_record_however_the_chunks_split_it(log: AgentLog) -> None:
    out = log.writer("web.1")
    data = b"starting\n" + TRACEBACK + b"WARNING:root:still here\n"
    for i in range(len(data)):  # one byte a feed: every split point
        out.feed("stderr", data[i : i + 1])
    recs = read(log.path)
    assert [(r["level"], r["message"]) for r in recs] == [
        ("info", "starting"),
        ("error", TRACEBACK.decode().removesuffix("\n")),
        ("warn", "WARNING:root:still here"),
    ]


def test_chained_tracebacks_and_exception_groups_stay_whole(log: AgentLog) -> None:
    chained = (TRACEBACK + b"\nDuring handling of the above exception, another exception "
               b"occurred:\n\n" + TRACEBACK)
    group = (b"  + Exception Group Traceback (most recent call last):\n"
             b"Exception Group Traceback (most recent call last):\n  | ExceptionGroup: g\n"
             b"  +-+---------------- 1 ----------------\n    | ValueError: v\n"
             b"ExceptionGroup: g (1 sub-exception)\n")
    log.writer("web.1").feed("stderr", chained + group[55:] + b"done\n")
    assert messages(log.path) == [chained.decode()[:-1], group[55:].decode()[:-1], "done"]


def test_an_unfinished_traceback_is_written_at_eof_at_close_and_after_an_idle_time(
        tmp_path: Path) -> None:
    log = AgentLog(tmp_path, "web", clock=Clock())
    out = log.writer("web.1")
    out.feed("stderr", TRACEBACK[:60])
    assert messages(log.path) == []  # held: its frames may still come
    out.eof("stderr")  # the torn frame line too
    assert messages(log.path) == [TRACEBACK[:60].decode()]
    out.feed("stdout", HEAD)
    log.close()
    assert messages(log.path)[-1] == HEAD.decode().removesuffix("\n")

    async def idle() -> list[object]:
        log = AgentLog(tmp_path, "idle", clock=Clock())
        out = log.writer("idle.1")
        out.feed("stderr", HEAD)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if messages(log.path):
                break
        shown = messages(log.path)
        log.close()
        return shown

    assert asyncio.run(idle()) == [HEAD.decode().removesuffix("\n")]


def test_a_held_traceback_survives_a_daemon_restart_through_the_tail_file(
        tmp_path: Path) -> None:
    log = AgentLog(tmp_path, "web", clock=Clock())
    first = log.writer("web.1", tail_file=tmp_path / "tails")
    first.feed("stderr", TRACEBACK[:60])
    second = log.writer("web.1", tail_file=tmp_path / "tails")  # the next daemon
    second.restore_from_tail_file()
    second.feed("stderr", TRACEBACK[60:])
    assert messages(log.path) == [TRACEBACK.decode()[:-1]]


def test_a_traceback_longer_than_a_line_is_framed_line_by_line(tmp_path: Path) -> None:
    log = AgentLog(tmp_path, "web", clock=Clock(), max_line=100)
    frames = b"".join(b'  File "f.py", line %d\n' % i for i in range(10))
    log.writer("web.1").feed("stderr", b"Traceback (most recent call last):\n" + frames)
    shown = messages(log.path)
    assert shown[0] == "Traceback (most recent call last):" and len(shown) == 11


def test_a_traceback_holding_a_secret_is_one_redacted_record(log: AgentLog) -> None:
    out = log.writer("web.1")
    out.redact(["hunter22"])
    out.feed("stderr", TRACEBACK.replace(b"boom", b"password hunter22") + b"next\n")
    assert messages(log.path) == [
        TRACEBACK.decode().replace("boom", "password ***").removesuffix("\n"), "next"]


def test_a_traceback_restored_from_the_tail_file_is_written_at_eof(tmp_path: Path) -> None:
    log = AgentLog(tmp_path, "web", clock=Clock())
    log.writer("web.1", tail_file=tmp_path / "tails").feed("stderr", HEAD)
    again = log.writer("web.1", tail_file=tmp_path / "tails")
    again.restore_from_tail_file()
    again.eof("stderr")
    assert messages(log.path) == [HEAD.decode().removesuffix("\n")]


JAVA = (b'Exception in thread "main" java.lang.IllegalStateException: boom\n'
        b"\tat com.acme.Main.run(Main.java:12)\n"
        b"Caused by: java.io.IOException: disk gone\n"
        b"\tat com.acme.Disk.read(Disk.java:3)\n"
        b"\t... 2 more\n")
NODE = (b"TypeError: x is not a function\n"
        b"    at fn (/app/index.js:1:2)\n"
        b"    at Object.<anonymous> (/app/index.js:3:1)\n")
GO = (b"panic: boom\n\n"
      b"goroutine 1 [running]:\n"
      b"main.main()\n"
      b"\t/app/main.go:12 +0x1d\n"
      b"exit status 2\n")


@pytest.mark.parametrize("stack", [JAVA, NODE, GO], ids=["java", "node", "go"])
def test_a_java_node_or_go_stack_is_one_error_record_however_the_chunks_split_it(
        log: AgentLog, stack: bytes) -> None:
    out = log.writer("web.1")
    data = b"starting\n" + stack + b"WARNING: still here\n"
    for i in range(len(data)):  # one byte a feed: every split point, the head alone too
        out.feed("stderr", data[i : i + 1])
    assert [(r["level"], r["message"]) for r in read(log.path)] == [
        ("info", "starting"),
        ("error", stack.decode().removesuffix("\n")),
        ("warn", "WARNING: still here"),
    ]


@pytest.mark.parametrize("stack", [JAVA, NODE, GO], ids=["java", "node", "go"])
def test_stacks_in_one_chunk_with_lines_between_are_a_record_each(log: AgentLog,
                                                                  stack: bytes) -> None:
    log.writer("web.1").feed("stdout", stack + b"between\n" + stack + b"done\n")
    one = stack.decode().removesuffix("\n")
    assert messages(log.path) == [one, "between", one, "done"]


def test_an_unfinished_stack_is_one_record_at_eof_a_held_head_alone_a_line(
        tmp_path: Path) -> None:
    log = AgentLog(tmp_path, "web", clock=Clock())
    out = log.writer("web.1")
    out.feed("stderr", JAVA[:-len(b"\t... 2 more\n")])
    assert messages(log.path) == []  # more frames may come
    out.eof("stderr")
    assert [(r["level"], r["message"]) for r in read(log.path)] == [
        ("error", JAVA.decode()[: -len("\n\t... 2 more\n")])]
    out = log.writer("web.2")
    out.feed("stdout", b"Error: could not connect\n")  # a head whose frames may still come
    assert len(read(log.path)) == 1
    out.feed("stdout", b"retrying\n")  # no frame: both as lines, the first at its own level
    assert [(r["level"], r["message"]) for r in read(log.path)][1:] == [
        ("error", "Error: could not connect"), ("info", "retrying")]
    out.feed("stdout", b"panic: no goroutine follows\n")
    out.eof("stdout")
    assert read(log.path)[-1]["message"] == "panic: no goroutine follows"
    assert read(log.path)[-1]["level"] == "fatal"  # the level its word says, as any line


def test_a_held_head_is_written_as_a_line_after_an_idle_time(tmp_path: Path) -> None:
    async def idle() -> list[tuple[object, object]]:
        log = AgentLog(tmp_path, "idle", clock=Clock())
        out = log.writer("idle.1")
        out.feed("stderr", b"ok\njava.lang.IllegalStateException: maybe\n")
        first = [(r["level"], r["message"]) for r in read(log.path)]
        for _ in range(100):
            await asyncio.sleep(0.05)
            if len(read(log.path)) > 1:
                break
        shown = [(r["level"], r["message"]) for r in read(log.path)]
        log.close()
        return first + shown

    assert asyncio.run(idle()) == [
        ("info", "ok"), ("info", "ok"), ("info", "java.lang.IllegalStateException: maybe")]


def test_a_java_stack_holding_a_secret_is_one_redacted_record(log: AgentLog) -> None:
    out = log.writer("web.1")
    out.redact(["hunter22"])
    out.feed("stderr", JAVA.replace(b"disk gone", b"password hunter22") + b"next\n")
    assert messages(log.path) == [
        JAVA.decode().replace("disk gone", "password ***").removesuffix("\n"), "next"]


def test_a_held_head_survives_a_daemon_restart_through_the_tail_file(tmp_path: Path) -> None:
    log = AgentLog(tmp_path, "web", clock=Clock())
    first = log.writer("web.1", tail_file=tmp_path / "tails")
    first.feed("stderr", NODE[: NODE.index(b"    at")])
    second = log.writer("web.1", tail_file=tmp_path / "tails")  # the next daemon
    second.restore_from_tail_file()
    second.feed("stderr", NODE[NODE.index(b"    at") :] + b"next\n")
    assert messages(log.path) == [NODE.decode()[:-1], "next"]
