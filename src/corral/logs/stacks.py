"""Multi-line stacks as one record: a Python traceback, from its ``Traceback (most recent call
last):`` line through the indented frames to the exception line that ends it (chained ones,
"During handling of the above exception..." or "The above exception was the direct cause...",
included when they come in the same read).

The sink looks here only when the block's scan (``records.scan``, which it makes anyway) says a
traceback may start in it, so blocks without one (nearly all) cost nothing more. A stack the
block ends inside is handed back to be held until more output completes it; the sink bounds
how long (an idle time, EOF) and how much (``MAX_LINE``) it holds.
"""

from __future__ import annotations

START = b"Traceback (most recent call last):"
_GROUP = b"Exception Group "  # 3.11's exception groups: "Exception Group Traceback (...):"
_CHAINS = tuple(
    b"\n" + text + b"\n\n" for text in (
        b"During handling of the above exception, another exception occurred:",
        b"The above exception was the direct cause of the following exception:",
    )
)
_INDENT = (32, 9)  # space, tab: the frames ("  File ...", "    code", "    ^^^^")


def split(block: bytes) -> tuple[list[tuple[bool, bytes]], bytes]:
    """``block`` (complete lines) as runs: ``(False, lines)`` to frame line by line and
    ``(True, stack)`` for each whole stack (its lines, newlines kept); and the lines of a
    stack the block ends inside (empty when none), to hold."""
    runs: list[tuple[bool, bytes]] = []
    pos = 0
    while (start := _next_start(block, pos)) >= 0:
        if start > pos:
            runs.append((False, block[pos:start]))
        end = _stack_end(block, block.index(b"\n", start) + 1)
        if end < 0:
            return runs, block[start:]
        runs.append((True, block[start:end]))
        pos = end
    if pos < len(block):
        runs.append((False, block[pos:] if pos else block))
    return runs, b""


def _next_start(block: bytes, pos: int) -> int:
    """Where the next line starting a stack begins, or -1."""
    i = block.find(START, pos)
    while i >= 0:
        if i == 0 or block[i - 1] == 10:
            return i
        group = i - len(_GROUP)
        if group >= pos and block[group:i] == _GROUP and (group == 0 or block[group - 1] == 10):
            return group
        i = block.find(START, i + 1)
    return -1


def _stack_end(block: bytes, pos: int) -> int:
    """The end of the stack whose frames start at ``pos``: after its exception line (and the
    chained stacks that follow at once), or -1 when the block ends first."""
    n = len(block)
    while pos < n:
        if block[pos] in _INDENT:
            pos = block.index(b"\n", pos) + 1
            continue
        pos = block.index(b"\n", pos) + 1  # the exception line: the end, unless a chain follows
        chain = next((c for c in _CHAINS if block.startswith(c, pos)), None)
        if chain is None or not block.startswith(START, pos + len(chain)):
            return pos
        pos = block.index(b"\n", pos + len(chain)) + 1
    return -1
