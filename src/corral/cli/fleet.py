"""Commands that talk to the daemon: up, down, ps, logs, start, stop, restart, scale."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from corral.cli import daemonctl, output, project
from corral.errors import CorralError


def _load(args: argparse.Namespace) -> Any:
    from corral.manifest.loader import load

    return load(project.manifest_path(args.file))


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
    from corral.cli.advise import print_up_warnings

    print_up_warnings(manifest)
    client = daemonctl.ensure_daemon(manifest.state_dir, booting if guess == manifest.state_dir
                                     else None)
    # what the manifest's `environment:` secrets and `inherit_env` read, from this shell (not
    # the daemon's)
    from corral.environ import sent_by_cli

    sent = sent_by_cli(manifest, os.environ)
    body = {"manifest": manifest.model_dump(mode="json", by_alias=True), "secret_env": sent}
    report = client.request("POST", "/v1/apply", body, timeout=max(args.timeout, 60))
    if args.detach:
        return _up_detached(client, report, args.timeout)
    return _up_attached(client, manifest, report, color=output.use_color(args.no_color))


def _up_detached(client: Any, report: dict[str, list[str]], timeout: float) -> int:
    waited = client.request("POST", "/v1/wait", {"timeout": timeout}, timeout=timeout + 30)
    rows = waited["instances"]
    changed = set(report["started"]) | set(report["recreated"])
    for row in rows:
        if row["name"] in changed or row["state"] in ("fatal", "blocked"):
            print(output.summary_line(row))
    for name in report["removed"]:
        print(f"{name}: removed")
    if not waited["settled"]:
        print(f"corral: some instances are still starting after {timeout:g}s "
              "(see 'corral ps')", file=sys.stderr)
    failed = [r for r in rows if r["state"] in ("fatal", "blocked")]
    return 1 if failed else 0


def _up_attached(client: Any, manifest: Any, report: dict[str, list[str]], *,
                 color: bool) -> int:
    """Interleaved coloured output like ``docker compose up``; Ctrl-C stops the fleet."""
    width = max((len(n) for n in output.instance_names(manifest)), default=8)
    stop = {"asked": False}

    def on_sigint(signum: int, frame: object) -> None:
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
        print("\nGracefully stopping... (press Ctrl-C again to force)", file=sys.stderr)
        pid = daemonctl.daemon_pid(manifest.state_dir)
        client.request("POST", "/v1/shutdown", {"stop_fleet": True}, timeout=600)
        daemonctl.wait_gone(pid, 60)
        raise SystemExit(0)

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)
    try:
        for line in client.lines("GET", "/v1/events?logs=1"):
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            if "message" in event:
                print(output.format_line(event, width=width, color=color), flush=True)
            elif event.get("type") == "state":
                print(output.state_line(event, width=width, color=color), flush=True)
    except CorralError:
        if stop["asked"]:
            return 0
        raise
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_dir = project.state_dir(args.file)
    client = daemonctl.client(state_dir, timeout=args.timeout)
    if not client.alive():
        print("corral: nothing is running for this project", file=sys.stderr)
        return _down_containers(args)
    pid = daemonctl.daemon_pid(state_dir)
    stopped = client.request("POST", "/v1/shutdown", {"stop_fleet": True},
                             timeout=args.timeout)["stopped"]
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
    from corral.cli.containers import down

    for what in down(args.file, volumes=args.volumes, images=args.rmi):
        print(f"removed {what}")
    return 0


def _uses_containers(file: str | None) -> bool:
    """A text scan, so a fleet without containers pays nothing for engine calls."""
    return "container" in project.head(project.manifest_path(file))


def cmd_logs(args: argparse.Namespace) -> int:
    from urllib.parse import urlencode

    client = daemonctl.client(project.state_dir(args.file), timeout=None)
    params: list[tuple[str, str]] = [("agent", a) for a in args.agents]
    for key in ("since", "grep", "level", "tail"):
        value = getattr(args, key)
        if value is not None:
            params.append((key, str(value)))
    color = output.use_color(args.no_color)
    names = [r["name"] for r in client.instances()]
    width = max((len(n) for n in names), default=8)
    out = sys.stdout
    if not (args.follow and args.tail is None and args.since is None):
        for line in client.lines("GET", "/v1/logs?" + urlencode(params)):
            _emit(out, line, args, width, color)
    if args.follow:
        live = [p for p in params if p[0] != "tail" and p[0] != "since"]
        for line in client.lines("GET", "/v1/events?logs=1&" + urlencode(live)):
            if line.startswith(b"event: state") or not line.startswith(b"data: "):
                continue
            record = line[6:]
            if b'"message"' in record:
                _emit(out, record, args, width, color)
    return 0


def _emit(out: Any, line: bytes, args: argparse.Namespace, width: int, color: bool) -> None:
    """One record: as stored with ``--json`` (JSON escapes its control characters), else
    ``name | message`` with the message's escape sequences shown, not obeyed (``--raw``:
    obeyed)."""
    if not line.strip():
        return
    if args.json:
        out.write(line.decode(errors="replace") + "\n")
    else:
        out.write(output.format_line(json.loads(line), width=width, color=color,
                                     raw=args.raw) + "\n")
    out.flush()


def cmd_start(args: argparse.Namespace) -> int:
    from corral.cli.control import control

    return control(args, "start")


def cmd_stop(args: argparse.Namespace) -> int:
    from corral.cli.control import control

    return control(args, "stop")


def cmd_restart(args: argparse.Namespace) -> int:
    from corral.cli.control import control

    return control(args, "restart")


def cmd_scale(args: argparse.Namespace) -> int:
    client = daemonctl.client(project.state_dir(args.file), timeout=600)
    for pair in args.pairs:
        agent, sep, count = pair.partition("=")
        if not sep or not count.isdigit():
            raise CorralError(f"cannot read {pair!r}", "write AGENT=N, e.g. corral scale web=3")
        report = client.scale(agent, int(count))
        print(f"{agent}: {count} replica{'s' if count != '1' else ''} "
              f"(+{len(report['started'])} -{len(report['removed'])})")
    return 0


def cmd_status_wait(state_dir: str, names: list[str], timeout: float) -> list[dict[str, Any]]:
    """Poll until the named instances settle; used by ``run`` for dependencies."""
    client = daemonctl.client(state_dir)
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = [r for r in client.instances() if r["agent"] in names]
        if rows and all(r["state"] in ("running", "exited", "fatal", "stopped") for r in rows):
            break
        time.sleep(0.05)
    return rows


