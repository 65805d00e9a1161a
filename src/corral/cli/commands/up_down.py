"""``corral up`` (the daemon started if needed, the manifest applied, then its output
followed or, with ``-d``, its start waited for) and ``corral down`` (the fleet stopped, the
daemon gone, and what the project left in container engines removed)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from corral.cli import daemonctl, project, render
from corral.errors import CorralError

TYPE_CHECKING = False  # not typing's: every command pays for what a module imports
if TYPE_CHECKING:
    from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("up", help="start or reconcile the fleet")
    s.add_argument("-d", "--detach", action="store_true", help="return once started")
    s.add_argument("--timeout", type=float, default=120.0,
                   help="seconds -d waits for instances to start (default 120)")
    s.add_argument("--no-color", action="store_true")
    s.set_defaults(handler=cmd_up)
    s = sub.add_parser("down", help="stop the fleet and its daemon; nothing is left running")
    s.add_argument("--timeout", type=float, default=300.0)
    s.add_argument("--volumes", action="store_true",
                   help="also remove the project's named container volumes")
    s.add_argument("--rmi", action="store_true",
                   help="also remove the images built for the project's container agents")
    s.set_defaults(handler=cmd_down)


def _load(args: argparse.Namespace) -> Any:

    return project.load(args.file)


def cmd_up(args: argparse.Namespace) -> int:
    # The daemon boots (imports, state store) while this process parses the manifest: on two
    # cores that overlaps the two slowest steps of a cold start.
    guess = project.state_dir(args.file)
    booting = daemonctl.spawn_daemon(guess)
    try:
        manifest = _load(args)
    except CorralError:
        if booting is not None:  # an invalid manifest leaves nothing running
            daemonctl.stop_booting(guess, booting)
        raise
    from corral.cli.commands.doctor import print_up_warnings

    print_up_warnings(manifest)
    client = daemonctl.ensure_daemon(manifest.state_dir, booting if guess == manifest.state_dir
                                     else None)
    # what the manifest's `environment:` secrets and `inherit_env` read, from this shell (not
    # the daemon's)
    from corral.environ import sent_by_cli

    sent = sent_by_cli(manifest, os.environ)
    report = client.apply(manifest, timeout=max(args.timeout, 60), secret_env=sent)
    if args.detach:
        return _up_detached(client, report, args.timeout)
    return _up_attached(client, manifest, report, color=render.use_color(args.no_color))


def _up_detached(client: Any, report: dict[str, list[str]], timeout: float) -> int:
    waited = client.wait(timeout)
    rows = waited["instances"]
    changed = set(report["started"]) | set(report["recreated"])
    for row in rows:
        if row["name"] in changed or row["state"] in ("fatal", "blocked"):
            print(render.summary_line(row))
    for name in report["removed"]:
        print(f"{name}: removed")
    if not waited["settled"]:
        print(f"corral: some instances are still starting after {timeout:g}s "
              "(see 'corral ps')", file=sys.stderr)
    failed = [r for r in rows if r["state"] in ("fatal", "blocked")]
    return 1 if failed else 0


def _up_attached(client: Any, manifest: Any, report: dict[str, list[str]], *,
                 color: bool) -> int:
    """Interleaved coloured output like ``docker compose up``; Ctrl-C stops the fleet and
    exits 130 (SIGTERM: 143), as compose does: the fleet ended because it was interrupted."""
    width = max((len(n) for n in render.instance_names(manifest)), default=8)
    stop = {"signal": 0}

    def on_sigint(signum: int, frame: object) -> None:
        if stop["signal"]:
            raise KeyboardInterrupt
        stop["signal"] = signum
        print("\nGracefully stopping... (press Ctrl-C again to force)", file=sys.stderr)
        pid = daemonctl.daemon_pid(manifest.state_dir)
        client.shutdown(timeout=600)
        daemonctl.wait_gone(pid, 60)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)
    try:
        for line in client.event_lines(logs=True):
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            if "message" in event:
                print(render.format_line(event, width=width, color=color), flush=True)
            elif event.get("type") == "state":
                print(render.state_line(event, width=width, color=color), flush=True)
    except CorralError:
        if stop["signal"]:
            return 128 + stop["signal"]
        raise
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_dir = project.state_dir(args.file)
    client = daemonctl.client(state_dir, timeout=args.timeout)
    if not client.alive():
        print("corral: nothing is running for this project", file=sys.stderr)
        return _down_containers(args)
    pid = daemonctl.daemon_pid(state_dir)
    stopped = client.shutdown(timeout=args.timeout)
    if not daemonctl.wait_gone(pid, 30):
        raise CorralError(f"the daemon (pid {pid}) did not exit after stopping the fleet",
                          f"kill it: kill {pid}")
    print(f"stopped {len(stopped)} instance{'s' if len(stopped) != 1 else ''}")
    return _down_containers(args)


def _down_containers(args: argparse.Namespace) -> int:
    """The project's container network (and, asked, volumes and images) outlive its
    instances."""
    if not (args.volumes or args.rmi or _uses_containers(args.file)):
        return 0
    from corral.drivers.container import leftovers

    manifest = project.load(args.file)
    for what in leftovers.remove(manifest.name, manifest.agents, volumes=args.volumes,
                                 images=args.rmi):
        print(f"removed {what}")
    return 0


def _uses_containers(file: str | None) -> bool:
    """A text scan, so a fleet without containers pays nothing for engine calls."""
    return "container" in project.head(project.manifest_path(file))
