"""User-facing errors: one line naming the problem, one hint naming the fix.

Only ``corral.cli`` turns these into messages and exit codes; everything else raises them.
"""

from __future__ import annotations


class CorralError(Exception):
    """A problem the user can fix. ``str()`` is the one-line message shown to them."""

    exit_code = 1

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}: {fix}" if fix else problem)


class ManifestError(CorralError):
    """The manifest is invalid. ``problems`` lists every error found, each with its path."""

    exit_code = 2
    SHOWN = 50  # problems in the message; ``problems`` keeps them all

    def __init__(self, problems: list[str], source: str = "") -> None:
        # one line each: a key with a newline or an escape sequence must not forge lines or
        # drive the terminal
        problems = [_printable(p) for p in problems]
        self.problems = problems
        self.source = source
        head = f"{_printable(source)}: " if source else ""
        if len(problems) == 1:
            super().__init__(f"{head}{problems[0]}")
        else:
            shown = problems[: self.SHOWN]
            more = len(problems) - len(shown)
            tail = [f"... and {more} more (fix these first)"] if more else []
            super().__init__(f"{head}{len(problems)} problems:\n  " + "\n  ".join(shown + tail))


class UsageError(CorralError):
    """The command line asks for something impossible: a bad value (a regex that does not
    compile, a time in no known form), no manifest to act on."""

    exit_code = 2


class DaemonNotRunning(CorralError):
    exit_code = 3


class NotFound(CorralError):
    exit_code = 4


class DriverError(CorralError):
    """A driver could not prepare or start an agent (missing binary, failed venv build...)."""

    exit_code = 5


def _printable(text: str) -> str:
    """Control characters (newlines, ESC, NUL...) as escapes; everything else as is."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
