"""``corral logs``: the stored records, then (``-f``) the live ones, as ``name | message``
lines or as the stored JSON. With no daemon (after ``down``) the files under the state dir
are read directly, by the same query code the daemon answers with."""

from __future__ import annotations

import argparse
import json
import sys

from corral import paths
from corral.cli import daemonctl, project, render
from corral.errors import NotFound, UsageError

TYPE_CHECKING = False  # not typing's: every command pays for what a module imports
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from corral.api.client import Client

FOLLOW_EVERY = 2.0  # seconds between two copies of a cluster's pod logs with -f
_TIME_FORMS = "10m, 2h, 1h30m, an ISO-8601 time or unix seconds"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("logs", help="show and follow agents' logs")
    s.add_argument("names", nargs="*", metavar="AGENT|INSTANCE",
                   help="agents (web) or single instances (web.2); all when none")
    s.add_argument("-f", "--follow", action="store_true",
                   help="print the stored records (see --tail), then the new ones as they come")
    s.add_argument("--since", help=f"records from then on: {_TIME_FORMS}")
    s.add_argument("--until", help=f"records up to then: {_TIME_FORMS}")
    s.add_argument("-t", "--timestamps", action="store_true",
                   help="show each record's time (RFC 3339, UTC)")
    s.add_argument("--grep", help="regular expression on the message")
    s.add_argument("--level", choices=["debug", "info", "warn", "error", "fatal"],
                   help="minimum level")
    s.add_argument("--json", action="store_true", help="print records as JSON lines")
    s.add_argument("--raw", action="store_true",
                   help="write messages as the agents wrote them, escape sequences included "
                        "(by default control characters are shown escaped, as \\x1b)")
    s.add_argument("--tail", type=int, metavar="N",
                   help="only the last N records of each agent (0 with -f: only new ones)")
    s.add_argument("--run", type=_run_number, metavar="N",
                   help="only run N of a scheduled agent (see 'corral ps --all')")
    s.add_argument("--no-color", action="store_true")
    from corral.cli import targeting

    targeting.flags(s)
    s.set_defaults(handler=cmd_logs)


def cmd_logs(args: argparse.Namespace) -> int:
    filters = _filters(args)
    state = project.state_dir(args.file)
    directory = paths.StateLayout(state).logs
    from corral.cli import targeting

    target = targeting.remote(args, state)
    if target is not None:
        return _remote(args, filters, target, state, directory)
    client = daemonctl.client(state, timeout=None)
    current = [r["name"] for r in client.instances()] if client.alive() else None
    agents, instances = _resolve(args.names, directory, current or [], args.file)
    selected = {"agents": agents, "instances": instances, **filters}
    view = _View(args, width=_width(directory, current))
    live = None
    if args.follow and current is not None:  # subscribed before the history is read: no gap
        live = client.event_lines(logs=True, agents=agents or None, instance=instances or None,
                                  grep=filters["grep"], level=filters["level"],
                                  run=filters["run"])
    if not (args.follow and args.tail == 0):
        history = _from_daemon(client, selected, args.tail) if current is not None else (
            _from_files(directory, selected, args.tail))
        for rec, line in history:
            view.show(rec, line)
    if live is not None:
        kind = b""
        for event in live:  # server-sent events: "event: log" (or state), then its data
            if event.startswith(b"event: "):
                kind = event[7:]
            elif event.startswith(b"data: ") and kind == b"log":
                rec = json.loads(event[6:])
                if view.new(rec):
                    view.show(rec, event[6:])
    return 0


def _remote(args: argparse.Namespace, filters: dict[str, Any], target: dict[str, Any],
            state: str, directory: str) -> int:
    """A fleet in a cluster: its pods' new lines copied into the store (``targets.kubernetes
    .logs``), then shown from the store as after ``down``; ``-f`` repeats the copy every
    ``FOLLOW_EVERY`` seconds and shows what came."""
    import time

    from corral.targets.kubernetes import fleet

    label = target.get("project") or fleet.project_label(project.load(args.file))
    wanted = [n for n in args.names if "." not in n] or None
    fleet.fetch_logs(target, label, state, directory, wanted)
    agents, instances = _resolve(args.names, directory, [], args.file)
    selected = {"agents": agents, "instances": instances, **filters}
    view = _View(args, width=_width(directory, None))
    if not (args.follow and args.tail == 0):
        for rec, line in _from_files(directory, selected, args.tail):
            view.show(rec, line)
    else:
        view.last = time.time()
    while args.follow:
        time.sleep(FOLLOW_EVERY)
        fleet.fetch_logs(target, label, state, directory, wanted)
        for rec, line in _from_files(directory, {**selected, "since": view.last}, None):
            if view.new(rec):
                view.show(rec, line)
    return 0


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    """The record filters, checked here: a bad regex or time is a usage error (exit 2)."""
    import re

    from corral.logs.query import parse_since

    if args.follow and args.until is not None:
        raise UsageError("--until and -f do not go together", "drop one of them")
    if args.tail is not None and args.tail < 0:
        raise UsageError(f"--tail {args.tail}: not a count", "give --tail 0 or more")
    if args.grep is not None:
        try:
            re.compile(args.grep)
        except re.error as exc:
            raise UsageError(f"--grep {args.grep!r} is not a valid regular expression: {exc}",
                             "escape what is meant literally (\\[ for [)") from None
    times: dict[str, float | None] = {}
    for key in ("since", "until"):
        value = getattr(args, key)
        try:
            times[key] = parse_since(value) if value is not None else None
        except ValueError:
            raise UsageError(f"--{key} {value!r} reads as no time",
                             "use a duration ago (10m, 2h, 1h30m), an ISO-8601 time "
                             "(2026-12-02T14:03:05, local unless it names a zone) or unix "
                             "seconds") from None
    return {"grep": args.grep, "level": args.level, "run": args.run, **times}


def _run_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a run number: give N of 1 or more, "
                                         "as 'corral ps --all' lists them")
    return int(text)


def _resolve(names: list[str], directory: str, current: list[str], file: str | None
             ) -> tuple[list[str], list[str]]:
    """The agents and instances ``names`` mean: a name with a dot is an instance (``web.2``);
    each must be of the fleet (running, or in the manifest) or have stored records, else exit
    4 with a "did you mean"."""
    from corral.logs import query

    stored = query.agents_in(directory)
    agents_known = dict.fromkeys([*(n.rpartition(".")[0] for n in current), *stored])
    agents: list[str] = []
    instances: list[str] = []
    for name in dict.fromkeys(names):
        if "." in name:
            if name not in current and not query.stored_instance(directory, name):
                _unknown(name, [*current, *agents_known], file)
            instances.append(name)
        else:
            if name not in agents_known:
                _unknown(name, [*agents_known, *current], file)
            agents.append(name)
    return agents, instances


def _unknown(name: str, choices: list[str], file: str | None) -> None:
    """Exit 4, unless ``name`` is in the manifest (an agent that has printed nothing yet)."""
    from corral.cli.render import instance_names
    from corral.errors import CorralError
    from corral.manifest.hints import did_you_mean
    from corral.manifest.loader import load

    try:
        manifest = load(project.manifest_path(file))
        declared = [*manifest.agents, *instance_names(manifest)]
    except CorralError:  # an unreadable manifest: the names above are all there is
        declared = []
    if name in declared:
        return
    raise NotFound(f"no agent or instance named {name!r}"
                   f"{did_you_mean(name, [*choices, *declared])}",
                   "see 'corral ps' for the names (stored logs count too)")


def _width(directory: str, current: list[str] | None) -> int:
    if current:
        return max(len(n) for n in current)
    from corral.logs import query

    return max((len(a) + 2 for a in query.agents_in(directory)), default=8)


def _from_daemon(client: Client, selected: dict[str, Any], tail: int | None
                 ) -> Iterator[tuple[dict[str, Any], bytes | None]]:
    since, until = selected["since"], selected["until"]
    lines = client.log_lines(
        selected["agents"] or None, instance=selected["instances"] or None, grep=selected["grep"],
        level=selected["level"], run=selected["run"], tail=tail,
        since=repr(since) if since is not None else None,
        until=repr(until) if until is not None else None)
    return ((json.loads(line), line) for line in lines if line.strip())


def _from_files(directory: str, selected: dict[str, Any], tail: int | None
                ) -> Iterator[tuple[dict[str, Any], bytes | None]]:
    from corral.logs import query

    agents = selected["agents"] + [i.rpartition(".")[0] for i in selected["instances"]]
    filters = query.Filters.build(since=selected["since"], until=selected["until"],
                                  grep=selected["grep"], level=selected["level"],
                                  instances=selected["instances"], run=selected["run"])
    chosen = list(dict.fromkeys(agents)) or None
    records = (query.tail(directory, chosen, tail, filters=filters) if tail is not None
               else query.iter_records(directory, chosen, filters=filters))
    return ((rec, None) for rec in records)


class _View:
    """Writes records, remembering the last time shown so that a follow after the history
    prints each record once: the stream is subscribed before the history is read, so the
    records of that moment come twice and the copies are dropped here."""

    def __init__(self, args: argparse.Namespace, *, width: int) -> None:
        self.args, self.width = args, width
        self.color = render.use_color(args.no_color)
        self.last = -float("inf")
        # the records shown with time ``last``, by their canonical text: a set, so a burst
        # of lines of one timestamp costs each line once, not once per line before it
        self.at_last: set[str] = set()

    @staticmethod
    def _key(rec: dict[str, Any]) -> str:
        return json.dumps(rec, sort_keys=True, separators=(",", ":"), default=str)

    def new(self, rec: dict[str, Any]) -> bool:
        from corral.logs.query import stamp

        ts = stamp(rec)
        return ts > self.last or (ts == self.last and self._key(rec) not in self.at_last)

    def show(self, rec: dict[str, Any], line: bytes | None) -> None:
        from corral.logs.query import stamp

        ts = stamp(rec)
        if ts > self.last:
            self.last, self.at_last = ts, set()
        if ts == self.last:
            self.at_last.add(self._key(rec))
        out = sys.stdout
        if self.args.json:
            text = line.decode(errors="replace") if line is not None else json.dumps(
                rec, separators=(",", ":"))
            out.write(text + "\n")
        else:
            out.write(render.format_line(rec, width=self.width, color=self.color,
                                         raw=self.args.raw, timestamps=self.args.timestamps)
                      + "\n")
        out.flush()
