"""``corral``: the command line. The only place that turns errors into messages and exit codes.

Exit codes: 0 success; 1 the fleet did not reach the asked state (an instance failed);
2 invalid manifest or usage; 3 the daemon is not running; 4 no such agent; 5 a driver could not
prepare or start an agent; 130 interrupted.

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
            "doctor", "daemon", "vm")


def parser() -> argparse.ArgumentParser:
    import argparse
    from importlib import import_module

    p = argparse.ArgumentParser(
        prog="corral", description="Run a whole fleet of agents from one file.",
        epilog="Exit codes: 0 ok, 1 an instance failed, 2 invalid manifest or usage, "
               "3 daemon not running, 4 no such agent, 5 driver error, 130 interrupted.")
    p.add_argument("-f", "--file", help="manifest (default: $CORRAL_FILE or ./corral.yaml)")
    p.add_argument("--version", action="version", version=f"corral {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"corral.cli.commands.{name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from corral.cli import fastpath

    fast = fastpath.parse(argv)
    if fast is not None:
        return _guarded(lambda: fastpath.run(fast), interrupt=False)
    p = parser()
    args = p.parse_args(argv)
    if args.command is None:
        p.print_help()
        return 2
    return _guarded(lambda: int(args.handler(args)), interrupt=True)


def _guarded(run: Callable[[], int], *, interrupt: bool) -> int:
    """``run()``, its errors as one line and their exit code."""
    try:
        return run()
    except CorralError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        if not interrupt:
            raise
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
