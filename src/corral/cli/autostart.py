"""What ``corral boot`` installs, as text: a systemd unit, or an ``@reboot`` crontab entry.

Both run the same two command lines, this interpreter's ``corral -f MANIFEST up -d`` at boot
(``down`` when a unit stops), with the ``PATH`` (and ``PYTHONPATH``) of the shell that enabled
them: at boot neither systemd nor cron gives the user's, and the fleet must find what
``corral up`` found by hand.

The unit is ``Type=oneshot`` with ``RemainAfterExit=yes``. ``up -d`` is a transaction with an
exit code of its own (1 an instance failed, 5 a driver error) that systemd then reports as the
unit's result; the daemon it leaves running is already the fleet's supervisor (it restarts
agents and re-adopts them after its own restart), so systemd has no main process to watch,
and a ``corral down`` typed by hand is not a service crash to systemd as it would be with
``Type=forking`` and the daemon's PID file. ``ExecStop`` is ``down``.

Ordering: ``Wants=`` and ``After=`` ``network-online.target``, and the engine the fleet's
container agents use (``podman.socket``, ``docker.service``). A user manager has neither
``network-online.target`` nor ``docker.service`` of its own (those are the system's: the
lines are no-ops there, and Docker's is left out); with lingering it starts at boot once
``systemd-user-sessions.service`` has (after ``network.target``, not network-online).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from corral.errors import CorralError

CARRIED_ENV = ("PATH", "PYTHONPATH")  # from the enabling shell into the boot-time command


@dataclass(frozen=True, slots=True)
class Fleet:
    """The project ``corral boot`` brings up: its name, absolute paths, and the container
    engines its agents use (``podman``, ``docker``; empty without container agents)."""

    name: str
    manifest: str
    project_dir: str
    state_dir: str
    engines: tuple[str, ...] = ()


def corral_argv(fleet: Fleet, *verb: str) -> list[str]:
    return [sys.executable, "-m", "corral.cli.main", "-f", fleet.manifest, *verb]


def carried(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: environ[k] for k in CARRIED_ENV if environ.get(k) and environ[k].isprintable()}


# --- systemd ------------------------------------------------------------------------------


def unit_name(fleet: Fleet) -> str:
    return f"corral-{fleet.name}.service"


def engine_units(engines: Sequence[str], scope: str) -> list[str]:
    """What the fleet's container engines run as: Podman's API socket (a user unit too),
    Docker's daemon (a system unit only: a user manager cannot order after it)."""
    units = []
    if "podman" in engines:
        units.append("podman.socket")
    if "docker" in engines and scope == "system":
        units.append("docker.service")
    return units


def unit_text(fleet: Fleet, scope: str, environ: Mapping[str, str]) -> str:
    for path in (fleet.manifest, fleet.project_dir, sys.executable):
        if not path.isprintable():
            raise CorralError(f"cannot write a systemd unit for {path!r}: a unit file is "
                              "read line by line", "move the project to a plain path")
    after = " ".join(["network-online.target", *engine_units(fleet.engines, scope)])
    env = " ".join(_systemd_word(f"{k}={v}", exec_line=False)
                   for k, v in carried(environ).items())
    wanted_by = "multi-user.target" if scope == "system" else "default.target"
    lines = [
        "[Unit]",
        f"Description=corral fleet {fleet.name} ({_specifiers(fleet.manifest)})",
        f"Wants={after}",
        f"After={after}",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        f"WorkingDirectory={_specifiers(fleet.project_dir)}",  # a path as is: no quotes
        *([f"Environment={env}"] if env else []),
        f"ExecStart={_exec(corral_argv(fleet, 'up', '-d'))}",
        f"ExecStop={_exec(corral_argv(fleet, 'down'))}",
        "TimeoutStartSec=10min",
        "TimeoutStopSec=10min",
        "",
        "[Install]",
        f"WantedBy={wanted_by}",
        "",
    ]
    return "\n".join(lines)


def unit_manifest(text: str) -> str | None:
    """The manifest an installed unit brings up (from its ``ExecStart``), or None."""
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            words = shlex.split(line.partition("=")[2].replace("%%", "%"))
            if "-f" in words[:-1]:
                return words[words.index("-f") + 1]
    return None


def _exec(argv: Sequence[str]) -> str:
    return " ".join(_systemd_word(a, exec_line=True) for a in argv)


def _specifiers(text: str) -> str:
    return text.replace("%", "%%")


def _systemd_word(word: str, *, exec_line: bool) -> str:
    """One word of a unit line: ``%`` doubled (specifiers), ``$`` doubled on exec lines (no
    variable expansion), quoted when it has spaces, quotes or backslashes."""
    out = _specifiers(word)
    if exec_line:
        out = out.replace("$", "$$")
    if any(c in out for c in ' \t"\'\\;'):
        out = '"' + out.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return out


# --- cron ---------------------------------------------------------------------------------


def cron_marker(fleet: Fleet) -> str:
    return (f"# corral boot: fleet {fleet.name} from {fleet.manifest} "
            "(added by 'corral boot enable'; 'corral boot disable' removes it)")


def cron_entry(fleet: Fleet, environ: Mapping[str, str]) -> str:
    """``@reboot`` and a shell line: the state dir made (private) for the log, then ``up -d``
    from the project dir with the carried environment."""
    for path in (fleet.manifest, fleet.project_dir, fleet.state_dir, sys.executable):
        if "%" in path or not path.isprintable():
            raise CorralError(f"cannot write a crontab entry for {path!r}: cron reads '%' and "
                              "control characters in it as line breaks",
                              "move the project to a plain path")
    q = shlex.quote
    env = " ".join(f"{k}={q(v)}" for k, v in carried(environ).items() if "%" not in v)
    log = q(f"{fleet.state_dir}/boot.log")
    up = " ".join(q(a) for a in corral_argv(fleet, "up", "-d"))
    return (f"@reboot umask 077 && mkdir -p {q(fleet.state_dir)} && cd {q(fleet.project_dir)} "
            f"&& {env + ' ' if env else ''}{up} >>{log} 2>&1")


def cron_command(line: str) -> str:
    """The shell command of an ``@reboot`` line."""
    return line.removeprefix("@reboot").strip()


def with_entry(table: str, fleet: Fleet, environ: Mapping[str, str]) -> str:
    """``table`` with this fleet's entry (in place of an earlier one)."""
    kept = without_entry(table, fleet).rstrip("\n")
    lines = [kept] if kept else []
    return "\n".join([*lines, cron_marker(fleet), cron_entry(fleet, environ)]) + "\n"


def without_entry(table: str, fleet: Fleet) -> str:
    """``table`` less this fleet's marker and the ``@reboot`` line under it, nothing else."""
    marker = cron_marker(fleet)
    lines = table.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i] == marker:
            i += 2 if i + 1 < len(lines) and lines[i + 1].startswith("@reboot ") else 1
            continue
        out.append(lines[i])
        i += 1
    return "".join(line + "\n" for line in out)


def entry_in(table: str, fleet: Fleet) -> str | None:
    """This fleet's ``@reboot`` line in ``table``, or None."""
    lines = table.splitlines()
    marker = cron_marker(fleet)
    for i, line in enumerate(lines[:-1]):
        if line == marker and lines[i + 1].startswith("@reboot "):
            return lines[i + 1]
    return None
