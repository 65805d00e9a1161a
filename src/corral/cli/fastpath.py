"""The lean grammar of the commands that must answer in well under 100 ms: ``corral ps [--json]
[--status STATE]... [AGENT...]`` (``ps --all`` is left to the full parser) and
``start|stop|restart [--wait] [--timeout S] [NAME...]``, with the global ``-f FILE`` and
``--project-directory DIR`` before the command or after it. Scripts and dashboards poll ``ps``
and time starts; argparse alone costs more than the rest of the answer. ``parse`` gives the
namespace the full parser gives for the same argv (a test holds them to it), or None for
anything else (help, a typo, ``--file=X``: the full parser explains).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: its import costs ~3 ms on every `corral ps` poll
if TYPE_CHECKING:
    from types import SimpleNamespace

DEFAULT_TIMEOUT = 120.0  # commands.control's, which this module does not import for ps
# runtime.state.State's values (a test holds them equal), for ``ps --status``
STATES = ("created", "waiting", "preparing", "starting", "running", "stopping", "stopped",
          "exited", "backoff", "fatal", "blocked")


def parse(argv: list[str]) -> SimpleNamespace | None:
    from types import SimpleNamespace

    found = _without_globals(argv)
    if found is None:
        return None
    args, file, directory = found
    if args[:1] == ["ps"]:
        return _ps(file, directory, args[1:])
    if not args or args[0] not in ("start", "stop", "restart"):
        return None
    verb, rest = args[0], args[1:]
    wait, timeout, names = False, DEFAULT_TIMEOUT, []
    while rest:
        arg = rest.pop(0)
        if arg == "--wait" and verb != "stop":
            wait = True
        elif arg == "--timeout" and verb != "stop" and rest:
            try:
                timeout = float(rest.pop(0))
            except ValueError:
                return None
        elif arg.startswith("-"):
            return None
        else:
            names.append(arg)
    if verb == "stop":
        return SimpleNamespace(file=file, project_directory=directory, command=verb,
                               names=names)
    return SimpleNamespace(file=file, project_directory=directory, command=verb, names=names,
                           wait=wait, timeout=timeout)


def _without_globals(argv: list[str]) -> tuple[list[str], str | None, str | None] | None:
    """``argv`` less the global options (``-f FILE``, ``--file FILE``, ``--project-directory
    DIR``, before the command or after it; the last of each wins), and their values. None for
    an option without its value."""
    args: list[str] = []
    values: dict[str, str | None] = {"file": None, "dir": None}
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        key = "file" if arg in ("-f", "--file") else "dir" if arg == "--project-directory" else ""
        if not key:
            args.append(arg)
        elif not rest or rest[0].startswith("-"):
            return None
        else:
            values[key] = rest.pop(0)
            if len(args) > 1 and not args[-1].startswith("-") and rest[:1] != [] \
                    and not rest[0].startswith("-"):
                # words on both sides of it: argparse refuses the second lot (the first may
                # be an option's value, which argparse takes: it decides, a little slower)
                return None
    return args, values["file"], values["dir"]


def _ps(file: str | None, directory: str | None, rest: list[str]) -> SimpleNamespace | None:
    from types import SimpleNamespace

    json, status, agents, closed = False, None, [], False
    while rest:
        arg = rest.pop(0)
        if not arg.startswith("-"):
            if closed:  # names on both sides of an option: argparse refuses the second lot
                return None
            agents.append(arg)
            continue
        closed = bool(agents)
        if arg == "--json":
            json = True
        elif arg == "--status" or arg.startswith("--status="):
            value = arg.partition("=")[2] if "=" in arg else rest.pop(0) if rest else ""
            if value not in STATES:
                return None  # argparse names the choices
            status = [*(status or []), value]
        else:
            return None
    return SimpleNamespace(file=file, project_directory=directory, command="ps", json=json,
                           all=False, status=status, agents=agents, target=None, context=None,
                           namespace=None)


def run(ns: SimpleNamespace) -> int:
    """The parsed command's handler, importing only its own module."""
    if ns.command == "ps":
        from corral.cli.commands.ps import cmd_ps

        return cmd_ps(ns)  # type: ignore[arg-type]
    from corral.cli.commands.control import cmd_control

    return cmd_control(ns)  # type: ignore[arg-type]
