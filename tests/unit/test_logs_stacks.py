"""Where a traceback starts and ends in a block of complete lines."""

from __future__ import annotations

from corral.logs.stacks import split

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
