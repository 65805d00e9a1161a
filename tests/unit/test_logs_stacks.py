"""Where a stack (Python, Java, Node.js, Go) starts and ends in a block of complete lines, and
which last line is held as the possible head of one."""

from __future__ import annotations

import pytest

from corral.logs.stacks import alone, held_head, split

TB = (b"Traceback (most recent call last):\n"
      b'  File "a.py", line 1, in <module>\n'
      b"\tcode()\n"
      b"KeyError: 'k'\n")


def test_a_block_without_a_traceback_is_one_run() -> None:
    block = b"one\nsays Traceback (most recent call last): in the middle\n"
    assert split(block) == ([(False, block)], b"")


def test_lines_around_a_traceback_stay_lines() -> None:
    assert split(b"before\n" + TB + b"after\n") == (
        [(False, b"before\n"), (True, TB), (False, b"after\n")], b"")


def test_a_traceback_the_block_ends_inside_is_handed_back() -> None:
    runs, held = split(b"before\n" + TB[:-len(b"KeyError: 'k'\n")])
    assert runs == [(False, b"before\n")]
    assert held == TB[:-len(b"KeyError: 'k'\n")]


def test_chained_tracebacks_are_one_and_a_chain_line_alone_ends_nothing() -> None:
    cut = TB + b"\nThe above exception was the direct cause of the following exception:\n\n"
    chained = cut + TB
    assert split(chained + TB) == ([(True, chained), (True, TB)], b"")
    assert split(cut + b"later\n")[0][0] == (True, TB)


def test_an_exception_group_starts_at_its_own_line_start() -> None:
    group = (b"Exception Group Traceback (most recent call last):\n"
             b"  | ExceptionGroup: two (2 sub-exceptions)\n"
             b"ExceptionGroup: two (2 sub-exceptions)\n")
    assert split(group) == ([(True, group)], b"")
    assert split(b"x Exception Group " + group[len(b"Exception Group "):])[0][0][0] is False


JAVA = (b'Exception in thread "main" java.lang.IllegalStateException: boom\n'
        b"\tat com.acme.Main.run(Main.java:12)\n"
        b"\tat com.acme.Main.main(Main.java:5)\n"
        b"Caused by: java.io.IOException: disk gone\n"
        b"\tat com.acme.Disk.read(Disk.java:3)\n"
        b"\t... 2 more\n")
NODE = (b"TypeError: x is not a function\n"
        b"    at fn (/app/index.js:1:2)\n"
        b"    at Object.<anonymous> (/app/index.js:3:1)\n"
        b"    at node:internal/main/run_main_module:23:47\n")
GO = (b"panic: boom [recovered]\n"
      b"\tpanic: again\n"
      b"\n"
      b"goroutine 1 [running]:\n"
      b"main.main()\n"
      b"\t/app/main.go:12 +0x1d\n"
      b"\n"
      b"goroutine 7 [sleep]:\n"
      b"time.Sleep(0x3b9aca00)\n"
      b"\t/usr/lib/go/src/runtime/time.go:195 +0x10d\n"
      b"created by main.main in goroutine 1\n"
      b"\t/app/main.go:9 +0x3c\n"
      b"exit status 2\n")


@pytest.mark.parametrize("stack", [JAVA, NODE, GO], ids=["java", "node", "go"])
def test_a_stack_between_lines_is_one_run_from_its_head_line(stack: bytes) -> None:
    assert split(b"before\n" + stack + b"after\n") == (
        [(False, b"before\n"), (True, stack), (False, b"after\n")], b"")
    assert split(stack + stack + b"after\n") == (
        [(True, stack), (True, stack), (False, b"after\n")], b"")


@pytest.mark.parametrize("stack", [JAVA, NODE, GO[: GO.index(b"exit status")]],
                         ids=["java", "node", "go"])
def test_a_stack_the_block_ends_inside_is_handed_back_at_every_line(stack: bytes) -> None:
    ends = [i + 1 for i, c in enumerate(stack) if c == 10]
    for end in ends[1:]:  # from its first frame on (the head alone: see held_head)
        if stack is NODE or stack is JAVA or end > stack.index(b"goroutine"):
            assert split(b"before\n" + stack[:end]) == ([(False, b"before\n")], stack[:end])


def test_a_go_panic_line_without_goroutines_is_a_line() -> None:
    for block in (b"panic: not a crash\nnext\n", b"panic: no\n\nnext\n",
                  b"fatal error: x\n\tpanic: y\nnext\n"):
        assert split(block) == ([(False, block)], b"")
    assert split(b"panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/a.go:1 +0x1\n\n"
                 b"later\n")[0][0] == (
        True, b"panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/a.go:1 +0x1\n\n")
    # a function line no file line follows ends it
    assert split(b"panic: b\n\ngoroutine 1 [running]:\nmain.main()\n\t/a.go:1 +0x1\nok()\nno\n"
                 )[0][1] == (False, b"ok()\nno\n")


def test_frames_whose_head_came_earlier_are_one_run_still() -> None:
    frames = JAVA[JAVA.index(b"\tat"):]
    assert split(frames + b"next\n") == ([(True, frames), (False, b"next\n")], b"")


def test_a_last_line_that_may_head_a_stack_is_held_and_nothing_else() -> None:
    for head in (b"TypeError: x is not a function\n", b"java.lang.IllegalStateException: b\n",
                 b"panic: boom\n", b"panic: boom\n\n", b"fatal error: deadlock\n"):
        assert held_head(b"ok\n" + head) == 3
        assert split(b"ok\n" + head) == ([(False, b"ok\n")], head)
        assert alone(head)
    for block in (b"ok\n", b"Error: x\nok\n", b"ok\n\n", b"ok\npanic in the middle\n"):
        assert held_head(block) == len(block)
    assert not alone(JAVA) and not alone(TB[:36]) and not alone(GO[:40])


def test_an_indented_at_line_that_does_not_end_as_a_frame_is_a_line() -> None:
    block = b"Notes:\n    at least 3 replicas, see docs\n    at noon (local time)!\n"
    assert split(block + b"ok\n") == ([(False, block + b"ok\n")], b"")
    frames = b"Error: x\n    at least once\n    at /app/x.js:1:7\n    at f (node:internal:2:3)\n"
    assert split(frames + b"ok\n")[0][1] == (True, frames[frames.index(b"    at least"):])
