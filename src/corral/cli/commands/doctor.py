"""``corral doctor`` (which levels this host runs, the credentials lying about) and ``corral
recommend`` (which level fits each agent), plus the warnings ``corral up`` prints once: the
manifest's facts and the host's, through the rules of ``corral.advice.rules`` (imported when a
command needs them: every command builds the parser that registers these)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from corral.cli import project
from corral.errors import CorralError, NotFound

TYPE_CHECKING = False  # not typing's: every command pays for what a module imports
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from corral.advice import rules as advice

_CREDENTIAL_WORDS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "API_KEY", "ACCESS_KEY")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("doctor", help="which isolation levels this host supports, and fixes"
                   ).set_defaults(handler=cmd_doctor)
    s = sub.add_parser("recommend", help="which isolation level fits each agent, and why")
    s.add_argument("agents", nargs="*", metavar="AGENT")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=cmd_recommend)


def cmd_doctor(args: argparse.Namespace) -> int:
    import asyncio

    from corral.advice.doctor import report

    rows = asyncio.run(report())
    ok = True
    for level, available, detail, fix in rows:
        mark = "ok " if available else "-- "
        print(f"{mark}{level:<10} {detail}")
        if not available and fix:
            print(f"   {'':<10} fix: {fix}")
        ok = ok and (available or level not in ("process", "venv"))
    for warning in _credential_warnings(args.file):
        print(f"!! {'secrets':<10} {warning}")
    return 0 if ok else 1


def _credential_warnings(file: str | None) -> list[str]:
    """Least privilege (M10): .env files the manifest reads that git would commit, secret
    files others can read, long-lived cloud admin keys in the environment."""
    from corral.secrets import cloud_key_warnings, git_ignored, world_readable

    out = [f"{w}; corral keeps it from agents unless one declares it"
           for w in cloud_key_warnings(os.environ)]
    try:
        from corral.manifest.loader import load

        manifest = load(project.manifest_path(file), project_dir=project.directory())
    except CorralError:
        return out  # no manifest here (or a broken one: `corral config` says why)
    envs = {os.path.join(manifest.project_dir, ".env")}
    envs |= {e.path for a in manifest.agents.values() for e in a.env_file}
    envs |= {s.env_file for s in manifest.secrets.values() if s.env_file}
    for path in sorted(p for p in envs if os.path.isfile(p)):
        if git_ignored(path) is False:
            out.append(f"{path} is not git-ignored: a commit would publish it "
                       f"(add {os.path.basename(path)} to .gitignore)")
        if world_readable(path):
            out.append(f"{path} is readable by every user (chmod 600 {path})")
    for name, source in manifest.secrets.items():
        if source.file and world_readable(source.file):
            out.append(f"secret {name}: {source.file} is readable by every user "
                       f"(chmod 600 {source.file})")
    return out + cloud_warnings(manifest)


def cloud_warnings(manifest: Any) -> list[str]:
    """The fleet's cloud identities (M10): an agent's policy of ``*`` on ``*`` or none at
    all, admin-looking roles; corral's own identity's long-lived or root keys (asked of AWS:
    only for a fleet that declares ``cloud.aws``, so boto3 is imported only then)."""
    from corral.cloud.aws import policy

    out = policy.warnings(manifest)
    if manifest.cloud.aws is not None:
        try:
            from corral.cloud.aws import identity
        except ImportError:
            return [*out, "cloud.aws: boto3 is not installed (pip install 'corral[aws]')"]
        out += identity.warnings(manifest.cloud.aws)
    return out


def facts_of(name: str, agent: Any) -> advice.AgentFacts:
    """What the manifest says about one agent (a validated ``manifest.spec.Agent``)."""
    from corral.advice import rules as advice

    workdir = agent.workdir
    deps = agent.options.get("venv") is not None or any(
        os.path.isfile(os.path.join(workdir, f)) for f in ("requirements.txt", "pyproject.toml"))
    held = [use.env or use.source for use in agent.secrets]
    held += [k for k in agent.env if k.upper().startswith(advice.CLOUD_PREFIXES)
             or any(w in k.upper() for w in _CREDENTIAL_WORDS)]
    return advice.AgentFacts(
        name=name, agent_class=agent.class_, isolation=agent.isolation, trust=agent.trust,
        python_deps=deps, system_packages=tuple(agent.needs.system_packages),
        os=agent.needs.os, kernel=agent.needs.kernel, gpu=agent.needs.gpu,
        exposed=agent.needs.internet_facing, network=agent.network, credentials=tuple(held),
        user=agent.user)


def up_warnings(manifest: Any) -> list[str]:
    """Risky choices in the manifest, for ``corral up`` to print once (never blocking)."""
    from corral.advice import rules as advice

    out = [w for name, agent in manifest.agents.items()
           for w in advice.warnings(facts_of(name, agent))]
    out += writable_secret_warnings(manifest)
    from corral.manifest.peers import unreachable_warnings

    out += unreachable_warnings(manifest.agents)
    from corral.secrets import cloud_key_warnings

    held = cloud_key_warnings(os.environ)
    if held and any(a.isolation in ("process", "venv") for a in manifest.agents.values()):
        out.append("long-lived cloud keys are in the environment corral runs in ("
                   + "; ".join(held) + "); declare them as secrets of the agents that need "
                   "them only")
    return out + cloud_warnings(manifest)


def writable_secret_warnings(manifest: Any) -> list[str]:
    """A sandbox masks the manifest's secret files by path: one inside a dir the agent may
    write (its own workdir, a writable volume) can be moved out from under the mask (and
    rewritten) by the agent between two runs."""
    from corral.drivers.host.beneath import under

    files = [p for s in manifest.secrets.values() for p in (s.file, s.env_file) if p]
    files += [e.path for a in manifest.agents.values() for e in a.env_file]
    out = []
    for name, agent in manifest.agents.items():
        if agent.isolation != "sandbox":
            continue
        writable = [v.source for v in agent.volumes if not v.named and not v.read_only]
        if os.path.normpath(agent.workdir) != os.path.normpath(manifest.project_dir):
            writable.append(agent.workdir)  # the project root is shown read-only
        for path in dict.fromkeys(files):
            where = next((w for w in writable if under(path, w)), None)
            if where is not None:
                out.append(f"{name}: the secret file {path} is in {where}, which it may "
                           "write: it could move the file from under its mask and read it; "
                           "keep secret files out of the dirs agents write")
    return out


def _probes(drivers: Mapping[str, tuple[bool, str, str]]) -> list[advice.Probe]:
    """How to time `true` at each level. A container or a guest is not started to time it
    (seconds, and an image or guest to build): those say what ``corral doctor`` says of
    their drivers, so the two never disagree, and where their start is measured."""
    import shutil

    from corral.advice import rules as advice

    true = shutil.which("true") or "/bin/true"
    bwrap = shutil.which("bwrap")

    def said(level: str, unmeasured: str) -> str:
        ok, detail, fix = drivers.get(level, (False, f"no {level} driver installed", ""))
        if not ok:
            return f"{detail}: {fix}" if fix else detail
        return f"{detail}; {unmeasured} (docs/benchmarks.md measures it)"

    return [
        advice.Probe("process", [true]),
        advice.Probe("venv", [true], "as process once its venv is built (built once, cached)"),
        advice.Probe("sandbox", [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc",
                                 "/proc", "--unshare-pid", "--unshare-net", "--", true]
                     if bwrap else None, "" if bwrap else "bwrap not found: apt-get install "
                     "bubblewrap"),
        advice.Probe("container", None,
                     said("container", "start not timed here: it would start a container")),
        advice.Probe("vm", None, said("vm", "start not timed here: it would boot a guest")),
    ]


def host_levels(drivers: Mapping[str, tuple[bool, str, str]]) -> list[advice.LevelCost]:
    """Each level's cost here; ``drivers``: each driver's check, as ``corral doctor`` shows
    it (level: available, detail, fix)."""
    from corral.advice import rules as advice

    return [advice.measure(p) for p in _probes(drivers)]


def _driver_checks() -> dict[str, tuple[bool, str, str]]:
    import asyncio

    from corral.advice.doctor import report

    return {level: (ok, detail, fix) for level, ok, detail, fix in asyncio.run(report())}


def _available(costs: list[advice.LevelCost], drivers: Mapping[str, tuple[bool, str, str]]
               ) -> set[str]:
    from corral.advice import rules as advice

    ready = {level for level, (ok, _, _) in drivers.items() if ok}
    return {c.level for c in costs if c.available} | (ready & set(advice.LEVELS))


def cmd_recommend(args: argparse.Namespace) -> int:
    from corral.advice import rules as advice
    from corral.manifest.hints import did_you_mean

    manifest = project.load(args.file)
    names = args.agents or list(manifest.agents)
    for name in names:
        if name not in manifest.agents:
            raise NotFound(f"no agent named {name!r}{did_you_mean(name, manifest.agents)}",
                           "see 'corral config' for the agents")
    drivers = _driver_checks()
    costs = host_levels(drivers)
    available = _available(costs, drivers)
    advices = [advice.recommend(facts_of(n, manifest.agents[n]), available) for n in names]
    if args.json:
        print(json.dumps({
            "agents": [{"agent": a.agent, "current": a.current, "recommended": a.level,
                        "reasons": list(a.reasons), "notes": list(a.notes)} for a in advices],
            "levels": [{"level": c.level, "available": c.level in available,
                        "start_ms": c.start_ms, "detail": c.detail,
                        "profile": advice.PROFILE[c.level],
                        "boundary": advice.BOUNDARY[c.level]} for c in costs],
        }, indent=2))
        return 0
    for a in advices:
        verdict = "keep it" if not a.differs else f"use isolation: {a.level}"
        print(f"{a.agent}: at {a.current}; recommended {a.level} ({verdict})")
        for reason in a.reasons:
            print(f"  - {reason}")
        for note in a.notes:
            print(f"  note: {note}")
    print("\nlevels on this host (start: median time to run `true`, measured now):")
    for c in costs:
        start = f"{c.start_ms:7.1f} ms" if c.start_ms is not None else "      -   "
        state = "ok" if c.level in available else "--"
        print(f"  {state} {c.level:<10} {start}  {advice.PROFILE[c.level]}")
        if c.detail:
            print(f"     {'':<10} {'':>10}  {c.detail}")
        print(f"     {'':<10} {'':>10}  trust boundary: {advice.BOUNDARY[c.level]}")
    return 0


def print_up_warnings(manifest: Any) -> None:
    for line in up_warnings(manifest):
        print(f"corral: warning: {line}", file=sys.stderr)
