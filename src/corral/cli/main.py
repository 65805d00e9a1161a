"""``corral``: the command line. The only place that turns errors into messages and exit codes.

Exit codes: 0 success; 1 the fleet did not reach the asked state (an instance failed);
2 invalid manifest or usage (no manifest found too: ``errors.UsageError``); 3 the daemon is not
running; 4 no such agent; 5 a driver could not prepare or start an agent; 130 interrupted
(an attached ``up`` stopped by Ctrl-C; 143 by SIGTERM).

The global options ``-f/--file`` and ``--project-directory`` are accepted before the command
and after it, at every level of subcommands (``_globals_after``).

The commands live in ``cli.commands``, one module per group (``COMMANDS``, in the order
``--help`` lists them), each registering its subcommands and their handlers. ``ps`` and
``start|stop|restart`` first try ``cli.fastpath``, which imports nothing else: this module's
imports stay lazy for them.
"""

from __future__ import annotations

import os
import sys

from corral import __version__
from corral.errors import CorralError

TYPE_CHECKING = False  # not typing's: its import costs ~3 ms on every `corral ps` poll
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

# the modules under corral.cli.commands
COMMANDS = ("config", "up_down", "build", "ps", "logs", "events", "control", "run_exec",
            "top", "dashboard", "doctor", "daemon", "vm", "boot", "convert", "observability")


def parser() -> argparse.ArgumentParser:
    import argparse
    from importlib import import_module

    p = argparse.ArgumentParser(
        prog="corral", description="Run a whole fleet of agents from one file.",
        epilog="Exit codes: 0 ok, 1 an instance failed, 2 invalid manifest or usage, "
               "3 daemon not running, 4 no such agent, 5 driver error, 130 interrupted.")
    _globals(p, default=None)
    p.add_argument("--version", action="version", version=f"corral {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"corral.cli.commands.{name}").register(sub)
    _globals_after(sub)
    return p


def _globals(p: argparse.ArgumentParser, *, default: object) -> None:
    """``-f/--file`` and ``--project-directory`` on ``p``, less what ``p`` already uses
    (``logs -f`` follows, as compose's does)."""
    taken = p._option_string_actions
    for flags, kw in (((("-f", "--file")), {"help": "manifest (default: $CORRAL_FILE, else "
                                                    "corral.yaml in the project directory)"}),
                      (("--project-directory",), {"metavar": "DIR", "help": (
                          "the project's directory: relative paths in the manifest start "
                          "there, and the manifest is looked for there (default: the "
                          "manifest's directory)")})):
        free = [f for f in flags if f not in taken]
        if free:
            dest = "file" if "--file" in flags else "project_directory"
            p.add_argument(*free, dest=dest, default=default, **kw)  # type: ignore[arg-type]


def _globals_after(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The global options after the command too (``corral ps -f FILE``), at every level of
    subcommands; absent there, they leave what came before the command."""
    import argparse

    for command in set(sub.choices.values()):
        _globals(command, default=argparse.SUPPRESS)
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _globals_after(action)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from corral.cli import fastpath

    fast = fastpath.parse(argv)
    if fast is not None:
        return _guarded(lambda: _in_project(fast, lambda: fastpath.run(fast)))
    p = parser()
    args = p.parse_args(argv)
    if args.command is None:
        p.print_help()
        return 2
    return _guarded(lambda: _in_project(args, lambda: int(args.handler(args))))


def _in_project(args: object, run: Callable[[], int]) -> int:
    """``run()`` with ``--project-directory`` set for every question about the project."""
    directory = getattr(args, "project_directory", None)
    if directory is not None:
        from corral.cli import project

        project.use_directory(directory)
    return run()


def _guarded(run: Callable[[], int]) -> int:
    """``run()``, its errors as one line and their exit code; Ctrl-C (of ``start --wait`` on
    the fast path too) is "interrupted" and 130, never a traceback."""
    try:
        return run()
    except CorralError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _error(message: str) -> None:
    color = sys.stderr.isatty() and "NO_COLOR" not in os.environ
    prefix = "\033[31mcorral:\033[0m " if color else "corral: "
    print(prefix + message, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
