"""``corral``: the command line. The only place that turns errors into messages and exit codes.

Exit codes: 0 success; 1 the fleet did not reach the asked state (an instance failed);
2 invalid manifest or usage; 3 the daemon is not running; 4 no such agent; 5 a driver could not
prepare or start an agent; 130 interrupted.
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

    Command = Callable[[argparse.Namespace], int]


def _parser() -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(
        prog="corral", description="Run a whole fleet of agents from one file.",
        epilog="Exit codes: 0 ok, 1 an instance failed, 2 invalid manifest or usage, "
               "3 daemon not running, 4 no such agent, 5 driver error, 130 interrupted.")
    p.add_argument("-f", "--file", help="manifest (default: $CORRAL_FILE or ./corral.yaml)")
    p.add_argument("--version", action="version", version=f"corral {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("init", help="write a starter corral.yaml")
    s.add_argument("--class", dest="classes", action="append",
                   choices=["compute", "io", "service", "ai"],
                   help="agent classes to include (repeat; default: all)")
    s.add_argument("--force", action="store_true", help="overwrite an existing file")
    sub.add_parser("config", help="print the normalized manifest with defaults applied")
    sub.add_parser("schema", help="print the manifest's JSON Schema (for editors)")

    s = sub.add_parser("up", help="start or reconcile the fleet")
    s.add_argument("-d", "--detach", action="store_true", help="return once started")
    s.add_argument("--timeout", type=float, default=120.0,
                   help="seconds -d waits for instances to start (default 120)")
    s.add_argument("--no-color", action="store_true")
    s = sub.add_parser("down", help="stop the fleet and its daemon; nothing is left running")
    s.add_argument("--timeout", type=float, default=300.0)
    s.add_argument("--volumes", action="store_true",
                   help="also remove the project's named container volumes")
    s.add_argument("--rmi", action="store_true",
                   help="also remove the images built for the project's container agents")

    s = sub.add_parser("build", help="build container agents' images (cached by content)")
    s.add_argument("agents", nargs="*", metavar="AGENT")
    s = sub.add_parser("image", help="container base images")
    image_sub = s.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    s = image_sub.add_parser("bootstrap", help="build a Debian base image with debootstrap "
                                               "and import it (no registry needed)")
    s.add_argument("--python", action="store_true", help="with python3 and python3-venv")
    s.add_argument("--engine", default="auto", choices=["auto", "podman", "docker"])
    s.add_argument("--force", action="store_true", help="import again even if present")

    s = sub.add_parser("ps", help="show every instance")
    s.add_argument("--json", action="store_true")
    s.add_argument("agents", nargs="*", metavar="AGENT")

    s = sub.add_parser("logs", help="show and follow agents' logs")
    s.add_argument("agents", nargs="*", metavar="AGENT")
    s.add_argument("-f", "--follow", action="store_true")
    s.add_argument("--since", help="10m, 2h, an ISO time or unix seconds")
    s.add_argument("--grep", help="regular expression on the message")
    s.add_argument("--level", choices=["debug", "info", "warn", "error", "fatal"],
                   help="minimum level")
    s.add_argument("--json", action="store_true", help="print records as JSON lines")
    s.add_argument("--raw", action="store_true",
                   help="write messages as the agents wrote them, escape sequences included "
                        "(by default control characters are shown escaped, as \\x1b)")
    s.add_argument("--tail", type=int, help="only the last N records")
    s.add_argument("--no-color", action="store_true")

    for name in ("start", "stop", "restart"):
        s = sub.add_parser(name, help=f"{name} agents or instances (all when none named)")
        s.add_argument("names", nargs="*", metavar="AGENT|INSTANCE")
        if name != "stop":
            s.add_argument("--wait", action="store_true",
                           help="return once each instance runs (exit 1 if one did not)")
            s.add_argument("--timeout", type=float, default=120.0,
                           help="seconds --wait waits (default 120)")

    s = sub.add_parser("scale", help="set the replicas of agents: corral scale web=3")
    s.add_argument("pairs", nargs="+", metavar="AGENT=N")

    s = sub.add_parser("run", help="run one agent once, attached; its exit code is ours")
    s.add_argument("agent")
    s.add_argument("args", nargs=argparse.REMAINDER, help="replace the command's arguments")

    s = sub.add_parser("exec", help="run a command in an agent's environment")
    s.add_argument("agent")
    s.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")

    sub.add_parser("doctor", help="which isolation levels this host supports, and fixes")
    s = sub.add_parser("recommend", help="which isolation level fits each agent, and why")
    s.add_argument("agents", nargs="*", metavar="AGENT")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("daemon", help="run the daemon in the foreground (for service managers)")
    from corral.cli import vm

    vm.add_parser(sub)
    return p


def _dispatch(args: argparse.Namespace) -> int:
    name = args.command
    fn: Command
    if name == "ps":
        from corral.cli import status

        fn = status.cmd_ps
    elif name in ("build", "image"):
        from corral.cli import containers

        fn = getattr(containers, f"cmd_{name}")
    elif name == "recommend":
        from corral.cli import advise

        fn = advise.cmd_recommend
    elif name in ("init", "config", "schema", "doctor", "run", "exec"):
        from corral.cli import local

        fn = getattr(local, f"cmd_{name}")
    elif name == "vm":
        from corral.cli import vm

        fn = vm.cmd_vm
    elif name == "daemon":
        from corral.cli import project
        from corral.daemon.entry import main as daemon_main

        return daemon_main(["--state-dir", project.state_dir(args.file)])
    else:
        from corral.cli import fleet

        fn = getattr(fleet, f"cmd_{name}")
    return fn(args)


def _fast(argv: list[str]) -> int | None:
    """``corral [-f FILE] ps [--json] [AGENT...]`` and ``start|stop|restart [--wait]
    [--timeout S] [NAME...]`` without argparse: scripts and dashboards poll ``ps`` and time
    starts, so they must answer in well under 100 ms. Anything else takes the full parser."""
    args = list(argv)
    file = None
    if args[:1] in (["-f"], ["--file"]) and len(args) >= 2:
        file, args = args[1], args[2:]
    ns: object | None = None
    if args[:1] == ["ps"]:
        if any(a.startswith("-") and a != "--json" for a in args[1:]):
            return None
        from types import SimpleNamespace

        ns = SimpleNamespace(file=file, command="ps", json="--json" in args,
                             agents=[a for a in args[1:] if a != "--json"])
    elif args[:1] in (["start"], ["stop"], ["restart"]):
        from corral.cli import control

        ns = control.parse(argv)
    if ns is None:
        return None
    try:
        if getattr(ns, "command", "") == "ps":
            return _dispatch(ns)  # type: ignore[arg-type]
        from corral.cli import control

        return control.control(ns, ns.command)  # type: ignore[arg-type, attr-defined]
    except CorralError as exc:
        _error(str(exc))
        return exc.exit_code
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def main(argv: list[str] | None = None) -> int:
    fast = _fast(sys.argv[1:] if argv is None else argv)
    if fast is not None:
        return fast
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _dispatch(args)
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
