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

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        head = f"{source}: " if source else ""
        if len(problems) == 1:
            super().__init__(f"{head}{problems[0]}")
        else:
            super().__init__(f"{head}{len(problems)} problems:\n  " + "\n  ".join(problems))


class DaemonNotRunning(CorralError):
    exit_code = 3


class NotFound(CorralError):
    exit_code = 4


class DriverError(CorralError):
    """A driver could not prepare or start an agent (missing binary, failed venv build...)."""

    exit_code = 5
