"""Multi-line stacks as one record:

- a Python traceback, from its ``Traceback (most recent call last):`` line through the
  indented frames to the exception line that ends it (chained ones, "During handling of the
  above exception..." or "The above exception was the direct cause...", included when they
  come in the same read);
- a Java (JVM) stack: the line before its first ``\\tat pkg.Class.method(File.java:12)``
  frame (``Exception in thread "main" java.lang.IllegalStateException: boom``), then every
  line starting with a tab (frames, ``\\t... 5 more``, ``\\tSuppressed: ...``) or
  ``Caused by: ``;
- a Node.js stack: the line before its first ``    at fn (/path/file.js:1:2)`` frame
  (``TypeError: x is not a function``), then the lines starting ``    at `` or ``    ... ``;
- a Go panic: a ``panic: `` (or ``fatal error: ``) line, the lines starting with a tab or
  ``[`` after it (``\\tpanic: ...`` of a re-panic, ``[signal SIGSEGV ...]``), a blank line,
  then goroutines (``goroutine 1 [running]:``, function and ``\\t/path/file.go:12 +0x1d``
  lines), blank lines between them, through an ``exit status 2`` line if one comes.

The sink looks here only when the block's scan (``records.scan``, which it makes anyway) says
a stack may start in it (a Python ``Traceback`` line, a tab and ``\\tat `` or ``goroutine ``,
a ``(`` and ``    at ``), so blocks without one (nearly all) cost nothing more. A stack the
block ends inside is handed back to be held until more output completes it, and so is a last
line that may head a stack whose frames are still to come (``held_head``: one holding
``Exception`` or ``Error``, or a Go ``panic: ``/``fatal error: `` line; the scan rules out
most blocks first, those on the fast path without an ``E``); the sink bounds how long (an
idle time, EOF) and how much (``MAX_LINE``) it holds, and writes a held head nothing
continued as the line it is. So a head line is one record with its frames when they come in
the same read or it is held; otherwise (a head without such a word, or a ``fatal error: ``
line alone in its read) it becomes a record of its own, and its frames another one (Java,
Node.js) or lines (a Go panic's goroutines); a Node.js stack whose frames have no ``(`` at
all stays lines too (the scan looks for one).
"""

from __future__ import annotations

from collections.abc import Callable

START = b"Traceback (most recent call last):"
_GROUP = b"Exception Group "  # 3.11's exception groups: "Exception Group Traceback (...):"
_CHAINS = tuple(
    b"\n" + text + b"\n\n" for text in (
        b"During handling of the above exception, another exception occurred:",
        b"The above exception was the direct cause of the following exception:",
    )
)
_INDENT = (32, 9)  # space, tab: the frames ("  File ...", "    code", "    ^^^^")
JAVA = b"\tat "  # a JVM frame
NODE = b"    at "  # a Node.js frame
GOROUTINE = b"goroutine "  # a Go goroutine's first line, after the panic line and a blank
_JAVA_MORE = (b"\t", b"Caused by: ")
_NODE_MORE = (NODE, b"    ... ")
_GO_HEADS = (b"panic: ", b"fatal error: ")
_GO_NOTES = (b"\t", b"[", b"panic: ")  # between a Go head and its blank line
_EXIT = b"exit status "  # ``go run``'s last line
_NOT = -2  # not a stack after all
_Stack = tuple[int, int]  # (start, end); end -1: the block ends inside it
_Finder = Callable[[bytes, int], _Stack | None]  # the next stack of a kind at or after pos


def look(block: bytes) -> bool:
    """Whether a stack may start in ``block``, from its raw bytes (no scan at hand)."""
    return START in block or JAVA in block or NODE in block or b"\n" + GOROUTINE in block


def split(block: bytes) -> tuple[list[tuple[bool, bytes]], bytes]:
    """``block`` (complete lines) as runs: ``(False, lines)`` to frame line by line and
    ``(True, stack)`` for each whole stack (its lines, newlines kept); and the lines to hold
    (empty when none): a stack the block ends inside, or a last line that may head one."""
    runs: list[tuple[bool, bytes]] = []
    pos, found = 0, _Finders(block)
    while (stack := found.next(pos)) is not None:
        start, end = stack
        if start > pos:
            runs.append((False, block[pos:start]))
        if end < 0:
            return runs, block[start:]
        runs.append((True, block[start:end]))
        pos = end
    head = held_head(block, pos)
    if head > pos:
        runs.append((False, block[pos:head] if pos or head < len(block) else block))
    return runs, block[head:]


def held_head(block: bytes, pos: int = 0) -> int:
    """Where the lines of ``block`` (from ``pos``) that may head a stack still to come start:
    its last line when it holds ``Exception`` or ``Error`` or is a Go panic line, or a Go
    panic line and the blank line after it; ``len(block)`` when none. A few C calls on the
    last line (the sink asks only when the scan's ``head`` says so)."""
    n = len(block)
    last = block.rfind(b"\n", pos, n - 1) + 1 or pos
    if block.startswith(_GO_HEADS, last) or (  # most lines have no "E": one call says so
            block.find(b"E", last) >= 0
            and (block.find(b"Error", last) >= 0 or block.find(b"Exception", last) >= 0)):
        return last
    if n - last == 1 and last > pos:  # a blank last line: after a Go panic line?
        before = block.rfind(b"\n", pos, last - 1) + 1 or pos
        return before if block.startswith(_GO_HEADS, before) else n
    return n


def alone(held: bytes) -> bool:
    """Whether held lines are only a line that might have headed a stack (and its blank
    line): written as ordinary lines when nothing came to continue them."""
    lines = held.count(b"\n")
    return not held.startswith((START, _GROUP)) and (
        lines <= 1 or (lines == 2 and held.endswith(b"\n\n")))


class _Finders:
    """The next stack of each kind at or after a position, each found once and kept until
    a stack before it is taken: a block holding many stacks is still read a few times."""

    __slots__ = ("block", "next_of")

    def __init__(self, block: bytes) -> None:
        self.block = block
        finders: tuple[_Finder, ...] = (_python, _java, _node, _go)
        self.next_of: dict[_Finder, _Stack | None] = dict.fromkeys(finders, (-1, -1))

    def next(self, pos: int) -> _Stack | None:
        best: _Stack | None = None
        for finder, stack in self.next_of.items():
            if stack is not None and stack[0] < pos:
                stack = self.next_of[finder] = finder(self.block, pos)
            if stack is not None and (best is None or stack[0] < best[0]):
                best = stack
        return best


def _python(block: bytes, pos: int) -> _Stack | None:
    start = _next_start(block, pos)
    return None if start < 0 else (start, _stack_end(block, block.index(b"\n", start) + 1))


def _next_start(block: bytes, pos: int) -> int:
    """Where the next line starting a traceback begins, or -1."""
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
    """The end of the traceback whose frames start at ``pos``: after its exception line (and
    the chained tracebacks that follow at once), or -1 when the block ends first."""
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


def _java(block: bytes, pos: int) -> _Stack | None:
    return _framed(block, pos, JAVA, _JAVA_MORE)


def _node(block: bytes, pos: int) -> _Stack | None:
    return _framed(block, pos, NODE, _NODE_MORE)


def _framed(block: bytes, pos: int, frame: bytes, more: tuple[bytes, ...]) -> _Stack | None:
    """The stack whose first frame is the next line at or after ``pos`` starting with
    ``frame`` and ending as a frame does: from the line before it (its head, unless the frame
    is at ``pos``) through the lines starting with one of ``more``."""
    first = _line_starting(block, frame, pos)
    while first >= 0 and not _is_frame(block, block.index(b"\n", first)):
        first = _line_starting(block, frame, block.index(b"\n", first) + 1)
    if first < 0:
        return None
    start = block.rfind(b"\n", pos, first - 1) + 1 or pos if first > pos else pos
    i, n = first, len(block)
    while i < n and block.startswith(more, i):
        i = block.index(b"\n", i) + 1
    return start, i if i < n else -1


def _is_frame(block: bytes, end: int) -> bool:
    """Whether the line ending at ``end`` ends as a frame does: ``(File.java:12)``,
    ``(/app/x.js:1:2)``, ``/app/x.js:1:2``, ``(<anonymous>)``, ``(native)`` (CR dropped)."""
    end -= block[end - 1] == 13
    return block[end - 1] == 41 or 48 <= block[end - 1] <= 57  # ")" or a digit


def _go(block: bytes, pos: int) -> _Stack | None:
    """The next Go panic at or after ``pos``: a head line its goroutines follow. Each kind of
    head is searched for once per occurrence, however many lines without goroutines there
    are."""
    heads = {head: _line_starting(block, head, pos) for head in _GO_HEADS}
    while any(i >= 0 for i in heads.values()):
        head, start = min(((h, i) for h, i in heads.items() if i >= 0), key=lambda hi: hi[1])
        after = block.index(b"\n", start) + 1
        end = _go_end(block, after)
        if end != _NOT:
            return start, end
        heads[head] = _line_starting(block, head, after)
    return None


def _go_end(block: bytes, i: int) -> int:
    """The end of the Go panic whose head line ends at ``i``: -1 when the block ends before
    it is known, ``_NOT`` when no goroutine follows the head."""
    n, at = len(block), block.startswith
    while i < n and at(_GO_NOTES, i):
        i = block.index(b"\n", i) + 1
    if i < n and block[i] != 10:
        return _NOT
    i += 1  # the blank line
    if i < n and not at(GOROUTINE, i):
        return _NOT
    while i < n:  # at a goroutine's first line
        i = block.index(b"\n", i) + 1
        while i < n and block[i] != 10:  # its frames: function line, then a tab line
            if at(_EXIT, i):
                return block.index(b"\n", i) + 1
            j = block.index(b"\n", i) + 1
            if block[i] != 9 and not at(b"...", i):  # a function line: a tab line follows
                if j >= n:
                    return -1
                if block[j] != 9:
                    return i
            i = j
        if i + 1 >= n:
            return -1  # (the blank line, if there is one, may be followed by a goroutine)
        i += 1
        if at(_EXIT, i):
            return block.index(b"\n", i) + 1
        if not at(GOROUTINE, i):
            return i
    return -1


def _line_starting(block: bytes, text: bytes, pos: int) -> int:
    """The start of the first line at or after ``pos`` (a line start) beginning with
    ``text``, or -1."""
    if block.startswith(text, pos):
        return pos
    i = block.find(b"\n" + text, pos)
    return i + 1 if i >= 0 else -1
