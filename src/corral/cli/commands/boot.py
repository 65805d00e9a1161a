"""``corral boot enable|disable|status|unit [--user|--system]``: bring the project's fleet up
at boot.

Where systemd is PID 1 (``/run/systemd/system`` exists), ``enable`` installs and enables the
unit ``corral-NAME.service`` (``cli.autostart`` words it and says why it is a oneshot): a
system unit in /etc/systemd/system (root only), or a user unit in ~/.config/systemd/user with
lingering, so it starts at boot without a login. Elsewhere (containers, these CI machines) it
adds an ``@reboot`` entry to the user's crontab under a marker comment naming the project,
which ``disable`` removes and nothing else. Each says in one line which it chose. ``unit``
prints the unit ``enable`` would install, wherever it runs.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import sys
from pathlib import Path

from corral.cli import autostart, project
from corral.errors import CorralError

TYPE_CHECKING = False  # not typing's: every command pays for what a module imports
if TYPE_CHECKING:
    from pathlib import Path

SYSTEMD_RUNTIME = "/run/systemd/system"  # present exactly when systemd is PID 1 (sd_booted)
SYSTEM_UNITS = Path("/etc/systemd/system")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("boot", help="start the fleet at boot: a systemd unit, else @reboot cron")
    verbs = s.add_subparsers(dest="boot_command", metavar="BOOT_COMMAND", required=True)
    for verb, text in (("enable", "install what brings the fleet up at boot"),
                       ("disable", "remove it (other crontab entries and units are kept)"),
                       ("status", "say what is installed for this project"),
                       ("unit", "print the systemd unit 'enable' installs")):
        v = verbs.add_parser(verb, help=text)
        scope = v.add_mutually_exclusive_group()
        scope.add_argument("--user", dest="scope", action="store_const", const="user",
                           help="a user unit with lingering (default when not root)")
        scope.add_argument("--system", dest="scope", action="store_const", const="system",
                           help="a system unit (needs root; default for root)")
        v.set_defaults(handler=cmd_boot)


def cmd_boot(args: argparse.Namespace) -> int:
    scope = args.scope or ("system" if os.geteuid() == 0 else "user")
    if scope == "system" and os.geteuid() != 0 and args.boot_command in ("enable", "disable"):
        raise CorralError(f"boot {args.boot_command} --system needs root",
                          "run it as root, or use --user")
    fleet = _fleet(args.file)
    if args.boot_command == "unit":
        sys.stdout.write(autostart.unit_text(fleet, scope, os.environ))
        return 0
    if args.boot_command == "status":
        return _status(fleet)
    systemd = os.path.isdir(SYSTEMD_RUNTIME)
    if args.boot_command == "enable":
        return _enable_unit(fleet, scope) if systemd else _enable_cron(fleet)
    return _disable_unit(fleet, scope) if systemd else _disable_cron(fleet)


def _fleet(file: str | None) -> autostart.Fleet:
    path = project.manifest_path(file)
    manifest = project.load(path)
    engines: set[str] = set()
    containers = [a for a in manifest.agents.values() if a.isolation == "container"]
    if containers:
        from corral.drivers.container import engine
        from corral.drivers.container.options import container_options

        engines = {engine.find(container_options(a).engine).name for a in containers}
    return autostart.Fleet(manifest.name, path, manifest.project_dir, manifest.state_dir,
                           tuple(sorted(engines)))


# --- systemd ------------------------------------------------------------------------------


def _unit_dir(scope: str) -> Path:
    if scope == "system":
        return SYSTEM_UNITS
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(config) / "systemd" / "user"


def _run(argv: list[str], what: str) -> None:
    import subprocess  # here: every command would pay for it at the top

    if shutil.which(argv[0]) is None:
        raise CorralError(f"cannot {what}: {argv[0]} is not installed", "install systemd")
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise CorralError(f"cannot {what}: {' '.join(argv)}: {said}",
                          "see 'journalctl -xe' and run it again")


def _systemctl(scope: str, *args: str) -> list[str]:
    return ["systemctl", *(["--user"] if scope == "user" else []), *args]


def _enable_unit(fleet: autostart.Fleet, scope: str) -> int:
    name = autostart.unit_name(fleet)
    path = _unit_dir(scope) / name
    _refuse_other(path, fleet)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(autostart.unit_text(fleet, scope, os.environ))
    _run(_systemctl(scope, "daemon-reload"), "reload systemd")
    _run(_systemctl(scope, "enable", name), f"enable {name}")
    if scope == "user":
        _run(["loginctl", "enable-linger", _user()],
             "enable lingering (so the user unit starts at boot without a login)")
    print(f"corral boot: systemd {scope} unit {path} enabled: it runs 'corral up -d' at boot")
    return 0


def _disable_unit(fleet: autostart.Fleet, scope: str) -> int:
    name = autostart.unit_name(fleet)
    path = _unit_dir(scope) / name
    if not path.exists():
        print(f"corral boot: no systemd {scope} unit {name} to remove", file=sys.stderr)
        return 0
    _refuse_other(path, fleet)
    _run(_systemctl(scope, "disable", name), f"disable {name}")
    path.unlink()
    _run(_systemctl(scope, "daemon-reload"), "reload systemd")
    print(f"corral boot: systemd {scope} unit {path} disabled and removed")
    return 0


def _refuse_other(path: Path, fleet: autostart.Fleet) -> None:
    """Two projects with one name would share a unit: the second may not overwrite it."""
    try:
        other = autostart.unit_manifest(path.read_text())
    except FileNotFoundError:
        return
    if other not in (None, fleet.manifest):
        raise CorralError(f"{path} brings up another fleet of that name ({other})",
                          f"run 'corral -f {other} boot disable' first, or rename this fleet")


def _unit_state(fleet: autostart.Fleet, scope: str) -> str | None:
    path = _unit_dir(scope) / autostart.unit_name(fleet)
    try:
        if autostart.unit_manifest(path.read_text()) != fleet.manifest:
            return None
    except OSError:
        return None
    wants = "multi-user.target.wants" if scope == "system" else "default.target.wants"
    enabled = (path.parent / wants / path.name).exists()
    return f"systemd {scope} unit {path} ({'enabled' if enabled else 'not enabled'})"


# --- cron ---------------------------------------------------------------------------------


def _crontab() -> str:
    found = shutil.which("crontab")
    if found is None:
        raise CorralError("systemd is not PID 1 here and there is no crontab binary for the "
                          "@reboot fallback", "install cron (apt-get install cron)")
    return found


def _user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def read_crontab(binary: str) -> str:
    import subprocess  # here: every command would pay for it at the top

    done = subprocess.run([binary, "-l"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if done.returncode == 0:
        return done.stdout
    if "no crontab" in done.stderr:
        return ""
    said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    raise CorralError(f"cannot read the crontab: {said}", "check that cron is installed")


def _write_crontab(binary: str, table: str) -> None:
    import subprocess  # here: every command would pay for it at the top

    argv = [binary, "-"] if table.strip() else [binary, "-r"]
    done = subprocess.run(argv, input=table, capture_output=True, text=True)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise CorralError(f"cannot write the crontab: {said}",
                          "check 'crontab -l' and /etc/cron.allow")


def _enable_cron(fleet: autostart.Fleet) -> int:
    binary = _crontab()
    table = read_crontab(binary)
    _write_crontab(binary, autostart.with_entry(table, fleet, os.environ))
    print(f"corral boot: systemd is not PID 1 here (no {SYSTEMD_RUNTIME}): added an @reboot "
          f"entry to {_user()}'s crontab that runs 'corral up -d' "
          f"(its output goes to {fleet.state_dir}/boot.log)")
    return 0


def _disable_cron(fleet: autostart.Fleet) -> int:
    binary = _crontab()
    table = read_crontab(binary)
    if autostart.entry_in(table, fleet) is None:
        print(f"corral boot: no @reboot entry for fleet {fleet.name} in {_user()}'s crontab",
              file=sys.stderr)
        return 0
    _write_crontab(binary, autostart.without_entry(table, fleet))
    print(f"corral boot: removed the @reboot entry for fleet {fleet.name} from {_user()}'s "
          "crontab")
    return 0


# --- status -------------------------------------------------------------------------------


def _status(fleet: autostart.Fleet) -> int:
    found = [s for scope in ("system", "user") if (s := _unit_state(fleet, scope))]
    binary = shutil.which("crontab")
    if binary is not None and (line := autostart.entry_in(read_crontab(binary), fleet)):
        found.append(f"@reboot entry in {_user()}'s crontab: {line}")
    for line in found:
        print(f"corral boot: {line}")
    if not found:
        way = ("a systemd unit" if os.path.isdir(SYSTEMD_RUNTIME)
               else "an @reboot crontab entry (systemd is not PID 1 here)")
        print(f"corral boot: nothing starts fleet {fleet.name} at boot "
              f"('corral boot enable' adds {way})")
    return 0
