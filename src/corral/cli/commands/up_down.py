"""``corral up`` (the daemon started if needed, the manifest applied, then its output
followed or, with ``-d``, its start waited for) and ``corral down`` (the fleet stopped, the
daemon gone, and what the project left in container engines removed)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from corral.cli import daemonctl, project, render, targeting
from corral.errors import CorralError, UsageError

TYPE_CHECKING = False  # not typing's: every command pays for what a module imports
if TYPE_CHECKING:
    from typing import Any

    from corral.cli.attached import Abort


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("up", help="start or reconcile the fleet (or just AGENT... and what "
                                  "they depend on)")
    s.add_argument("agents", nargs="*", metavar="AGENT",
                   help="just these and their dependencies; the others are left as they are")
    s.add_argument("-d", "--detach", action="store_true", help="return once started")
    s.add_argument("--timeout", type=float, default=120.0,
                   help="seconds -d waits for instances to start (default 120)")
    s.add_argument("--wait", action="store_true",
                   help="detach once every instance is ready: healthy with a readiness "
                   "probe, else running, or completed (exit 1 if one is not); implies -d")
    s.add_argument("--wait-timeout", type=float, default=None, metavar="S",
                   help="seconds --wait waits (default: --timeout's)")
    s.add_argument("--no-color", action="store_true")
    s.add_argument("--no-deps", action="store_true",
                   help="with AGENT...: not what they depend on")
    s.add_argument("--build", action="store_true",
                   help="build container agents' images first, as 'corral build' does")
    s.add_argument("--force-recreate", action="store_true",
                   help="restart instances even if their spec did not change")
    s.add_argument("--abort-on-container-exit", action="store_true",
                   help="stop the fleet when an instance exits; exit with its exit code")
    s.add_argument("--exit-code-from", metavar="AGENT",
                   help="exit with this agent's exit code (implies --abort-on-container-exit)")
    targeting.flags(s)
    s.add_argument("--force-conflicts", action="store_true",
                   help="kubernetes: take over fields another field manager owns")
    s.set_defaults(handler=cmd_up)
    s = sub.add_parser("down", help="stop the fleet and its daemon; nothing is left running")
    s.add_argument("--timeout", type=float, default=300.0)
    s.add_argument("--volumes", action="store_true",
                   help="also remove the project's named container volumes")
    s.add_argument("--rmi", action="store_true",
                   help="also remove the images built for the project's container agents")
    targeting.flags(s)
    s.set_defaults(handler=cmd_down)


def _say(line: str) -> None:
    print(line, flush=True)


def _up_remote(args: argparse.Namespace, target: dict[str, Any]) -> int:
    from corral.targets.kubernetes import fleet

    manifest = _load(args)
    if args.agents or args.no_deps or args.build or args.force_recreate or \
            args.abort_on_container_exit or args.exit_code_from:
        raise UsageError("--target kubernetes applies the whole fleet as it is",
                         "drop AGENT..., --no-deps, --build, --force-recreate and the abort "
                         "flags (build and push images yourself)")
    wait = args.wait or not args.detach
    timeout = args.timeout if args.wait_timeout is None else args.wait_timeout
    return fleet.up(manifest, context=target.get("context"), namespace=target.get("namespace"),
                    force=args.force_conflicts, wait_timeout=timeout if wait else None,
                    say=_say)


def _load(args: argparse.Namespace) -> Any:
    return project.load(args.file)


def _check_up(args: argparse.Namespace, manifest: Any) -> None:
    """The agents ``up`` names exist (exit 4), and its flags go together (exit 2)."""
    from corral.errors import NotFound
    from corral.manifest.hints import did_you_mean

    named = list(args.agents) + ([args.exit_code_from] if args.exit_code_from else [])
    for agent in named:
        if agent not in manifest.agents:
            raise NotFound(f"no agent named {agent!r}{did_you_mean(agent, manifest.agents)}",
                           "see 'corral config' for the agents")
    if (args.detach or args.wait) and (args.abort_on_container_exit or args.exit_code_from):
        flag = "-d" if args.detach else "--wait"
        raise UsageError(f"{flag} cannot be combined with --abort-on-container-exit or "
                         f"--exit-code-from", f"drop {flag}: they follow the fleet attached")
    if args.no_deps and not args.agents:
        raise UsageError("--no-deps needs the agents to start", "name them: corral up --no-deps "
                     "AGENT...")
    if args.exit_code_from and args.agents and args.exit_code_from not in args.agents:
        raise UsageError(f"--exit-code-from {args.exit_code_from} is not among the agents named",
                     f"add it: corral up ... {args.exit_code_from}")


def _build(manifest: Any, agents: list[str]) -> None:
    """``--build``: the chosen container agents' images, as ``corral build`` builds them."""
    from corral.cli.commands.build import build_images
    from corral.manifest import graph

    chosen = graph.with_dependencies(manifest, agents) if agents else set(manifest.agents)
    wanted = [a for a, spec in manifest.agents.items()
              if a in chosen and spec.isolation == "container"]
    if wanted and build_images(manifest, wanted):
        from corral.errors import DriverError

        raise DriverError("an image did not build (see above)", "fix it, then 'corral up' "
                          "again")


def cmd_up(args: argparse.Namespace) -> int:
    if args.wait_timeout is not None and not 0 <= args.wait_timeout <= 86_400:
        raise UsageError(f"--wait-timeout {args.wait_timeout:g} is out of range",
                         "give seconds from 0 to 86400, e.g. --wait-timeout 60")
    # The daemon boots (imports, state store) while this process parses the manifest: on two
    # cores that overlaps the two slowest steps of a cold start.
    guess = project.state_dir(args.file)
    target = targeting.remote(args, guess)
    if target is not None:
        return _up_remote(args, target)
    if args.force_conflicts:
        raise UsageError("--force-conflicts is for --target kubernetes",
                         "add --target kubernetes")
    if args.target is not None:  # local, or a cluster the local daemon places agents on
        from corral.targets import where

        where.forget(guess)
    booting = daemonctl.spawn_daemon(guess)
    try:
        manifest = targeting.placed(args, _load(args))
        _check_up(args, manifest)
        if args.build:
            _build(manifest, args.agents)
    except (CorralError, KeyboardInterrupt):
        if booting is not None:  # an invalid manifest leaves nothing running
            daemonctl.stop_booting(guess, booting)
        raise
    from corral.cli.commands.doctor import print_up_warnings

    print_up_warnings(manifest)
    own = booting if guess == manifest.state_dir else None
    client = daemonctl.ensure_daemon(manifest.state_dir, own)
    # what the manifest's `environment:` secrets and `inherit_env` read, from this shell (not
    # the daemon's)
    from corral.environ import sent_by_cli

    sent = sent_by_cli(manifest, os.environ)
    try:
        report = client.apply(manifest, timeout=max(args.timeout, 60), secret_env=sent,
                              only=args.agents or None, no_deps=args.no_deps,
                              recreate=args.force_recreate)
    except CorralError:
        if own is not None:  # refused (a taken metrics port): a new daemon does not stay
            daemonctl.stop_booting(manifest.state_dir, own)
        raise
    if args.wait:
        return _up_detached(client, report, args.timeout if args.wait_timeout is None
                            else args.wait_timeout, scoped=bool(args.agents), ready=True)
    if args.detach:
        return _up_detached(client, report, args.timeout, scoped=bool(args.agents))
    # up AGENT...: Ctrl-C (or an abort) stops what this up started, not the whole fleet
    scope = [*report["started"], *report["recreated"], *report["unchanged"]
             ] if args.agents else None
    abort = None
    if args.abort_on_container_exit or args.exit_code_from:
        from corral.cli.attached import Abort

        abort = Abort(client, args.agents, args.exit_code_from, report, scope)
    return _up_attached(client, manifest, args.agents, abort, scope,
                        color=render.use_color(args.no_color))


def _up_detached(client: Any, report: dict[str, list[str]], timeout: float, *,
                 scoped: bool, ready: bool = False) -> int:
    """``up -d``: a line for each instance that changed or failed, once the fleet settles;
    with ``ready`` (compose's ``up --wait``) a line for every one, once each is ready or
    failed to be. With AGENT..., only the instances this up started."""
    mine = [*report["started"], *report["recreated"], *report["unchanged"]]
    waited = client.wait(timeout, mine if scoped and mine else None, ready=ready)
    rows = waited["instances"]
    if scoped:  # up AGENT...: the others are not this command's to report
        rows = [r for r in rows if r["name"] in mine]
    changed = set(report["started"]) | set(report["recreated"])
    for row in rows:
        if ready or row["name"] in changed or row["state"] in ("fatal", "blocked"):
            print(render.summary_line(row))
    for name in report["removed"]:
        print(f"{name}: removed")
    if not waited["settled"]:
        print(f"corral: some instances are {'not ready' if ready else 'still starting'} "
              f"after {timeout:g}s (see 'corral ps')", file=sys.stderr)
    if ready:
        return 1 if set(r["name"] for r in rows) - set(waited["ready"]) else 0
    return 1 if any(r["state"] in ("fatal", "blocked") for r in rows) else 0


def _up_attached(client: Any, manifest: Any, agents: list[str], abort: Abort | None,
                 scope: list[str] | None, *, color: bool) -> int:
    """Interleaved coloured output like ``docker compose up`` (of the agents named, when
    some are); Ctrl-C stops the fleet and exits 130 (SIGTERM: 143), as compose does: the
    fleet ended because it was interrupted. An instance's exit with ``abort`` stops it too."""
    width = max((len(n) for n in render.instance_names(manifest)), default=8)
    stop = {"signal": 0}

    def on_sigint(signum: int, frame: object) -> None:
        if stop["signal"]:
            raise KeyboardInterrupt
        stop["signal"] = signum
        print("\nGracefully stopping... (press Ctrl-C again to force)", file=sys.stderr)
        from corral.cli.attached import stop_fleet

        stop_fleet(client, manifest.state_dir, scope)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)
    try:
        lines = client.event_lines(logs=True, agents=agents or None)
        if abort is not None and abort.already_ended():  # before the subscription
            return abort.stop_fleet(manifest.state_dir)
        for line in lines:
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            if "message" in event:
                print(render.format_line(event, width=width, color=color), flush=True)
            elif event.get("type") == "state":
                print(render.state_line(event, width=width, color=color), flush=True)
                if abort is not None and abort.ends(event):
                    return abort.stop_fleet(manifest.state_dir)
    except CorralError:
        if stop["signal"]:
            return 128 + stop["signal"]
        raise
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_dir = project.state_dir(args.file)
    target = targeting.remote(args, state_dir)
    if target is not None:
        from corral.targets.kubernetes import fleet

        label = target.get("project") or fleet.project_label(_load(args))
        return fleet.down(state_dir, target, label, _say, volumes=args.volumes)
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
