"""corral.yaml → frozen ``Manifest``, as a named pipeline of small steps (process-compose's habit).

Each step takes the raw mapping and the load context and returns a new mapping; problems are
collected on the context rather than raised, so one run reports *every* problem it can find:

    read YAML → drop x- keys → interpolate → class defaults → paths → env files → isolation
    → strings (NUL, lengths) → validate (pydantic over ``spec``'s records, agent by agent)
    → semantic checks (classes, drivers, dependencies) → networks (a container depending on
    an agent of the host's network joins it: ``peers.host_network``)

Warnings (an unset ``$VAR`` replaced by "", a missing workdir) never stop a load: pass a list as
``warnings=`` to collect them, or call ``load_with_warnings``. ``x-`` keys are ignored as in
compose, so YAML anchors can live there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from corral.errors import CorralError, ManifestError
from corral.manifest import files, yamlread
from corral.manifest.checks import string_problems
from corral.manifest.classes import (
    Normalize,
    absolute,
    agent_isolation,
    agent_problems,
    apply_class_defaults,
)
from corral.manifest.decode import cloud_problem
from corral.manifest.graph import dependency_problems, raw_graph
from corral.manifest.hints import MAX_UNKNOWN, did_you_mean, pydantic_problems
from corral.manifest.normalize import volume_entries
from corral.manifest.peers import host_network
from corral.manifest.spec import Agent, Manifest, agent_name_problem
from corral.manifest.validation import adapter
from corral.manifest.variables import Interpolator, agent_env, env_file_entries, read_dotenv

MANIFEST_NAMES = ("corral.yaml", "corral.yml")
# the built-ins; ``installed_drivers()`` adds third-party ones (entry points)
DEFAULT_DRIVERS: tuple[str, ...] = ("process", "venv", "sandbox", "container", "vm", "fake")
Data = dict[str, Any]
PathArg = str | os.PathLike[str]


@dataclass
class Context:
    """What the steps share: where relative paths start, the variables, and what was found."""

    project_dir: Path
    variables: Mapping[str, str] = field(default_factory=dict)
    drivers: Collection[str] = DEFAULT_DRIVERS
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --- entry points -------------------------------------------------------------------------


def installed_drivers() -> tuple[str, ...]:
    try:
        from corral.manifest import routes

        return tuple(routes.drivers())
    except Exception:  # broken package metadata must not stop validation
        return DEFAULT_DRIVERS


def driver_hooks() -> list[Normalize]:
    """The drivers' loader hooks (``normalize``: the defaults their blocks imply)."""
    from corral.manifest import routes

    return routes.normalizers()


def find_manifest(path: PathArg | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """``path``, else ``$CORRAL_FILE``, else corral.yaml / corral.yml in the current directory."""
    given = path or (os.environ if environ is None else environ).get("CORRAL_FILE")
    base = Path(given).expanduser() if given else Path()
    if given and not base.is_dir():
        return base
    candidates = [base / name for name in MANIFEST_NAMES]
    return next((c for c in candidates if c.is_file()), candidates[0])


def load(
    path: PathArg | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    drivers: Collection[str] | None = None,
    warnings: list[str] | None = None,
    project_dir: PathArg | None = None,
) -> Manifest:
    """Read, check and normalize a manifest file; raise ``ManifestError`` with every problem.
    Relative paths in it start at ``project_dir`` (default: the file's directory)."""
    file = find_manifest(path, environ)
    try:
        text = files.read_text(file)
    except FileNotFoundError:
        raise CorralError(
            f"manifest not found: {file}", "create one with 'corral init' or pass -f FILE"
        ) from None
    except files.Unreadable as exc:
        raise ManifestError([str(exc)], str(file)) from None
    except OSError as exc:
        raise CorralError(f"cannot read manifest {file}: {exc.strerror or exc}",
                          "check the file and its permissions") from None
    if project_dir is None:
        project_dir = Path(os.path.abspath(file)).parent
    return load_text(
        text, project_dir=project_dir, source=str(file), environ=environ, drivers=drivers,
        warnings=warnings,
    )  # fmt: skip


def load_with_warnings(
    path: PathArg | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    drivers: Collection[str] | None = None,
) -> tuple[Manifest, list[str]]:
    warnings: list[str] = []
    return load(path, environ=environ, drivers=drivers, warnings=warnings), warnings


def load_text(
    text: str,
    *,
    project_dir: PathArg,
    source: str = "<text>",
    environ: Mapping[str, str] | None = None,
    drivers: Collection[str] | None = None,
    warnings: list[str] | None = None,
) -> Manifest:
    """``load`` for a manifest already in memory; relative paths start at ``project_dir``.
    ``drivers``: the isolation names allowed (default: every installed driver)."""
    try:
        return _load_text(text, project_dir, source, environ, drivers, warnings)
    except (RecursionError, MemoryError) as exc:
        # a last resort: the YAML bounds keep every walk shallow and small, so reaching here
        # is a bug to fix, but the user still gets one line and exit 2, not a traceback
        what = "nested too deeply" if isinstance(exc, RecursionError) else "too large"
        raise ManifestError([f"the manifest is {what} to check (simplify it)"],
                            source) from None


def _load_text(
    text: str,
    project_dir: PathArg,
    source: str,
    environ: Mapping[str, str] | None,
    drivers: Collection[str] | None,
    warnings: list[str] | None,
) -> Manifest:
    ctx = Context(Path(os.path.abspath(os.path.expanduser(project_dir))),
                  drivers=installed_drivers() if drivers is None else drivers)
    data = read_yaml(text, source)
    if isinstance(data, dict) and "services" in data and "agents" not in data:
        raise ManifestError([f"a compose file, not a corral manifest: run 'corral import "
                             f"compose {source}' to write a corral.yaml from it"], source)
    environ = os.environ if environ is None else environ
    dotenv = ctx.project_dir / ".env"
    base: dict[str, str] = {}
    if files.is_file(dotenv):
        base, problems = read_dotenv(dotenv, ".env", environ)
        ctx.problems.extend(problems)
    ctx.variables = {**base, **environ}
    for step in STEPS:
        data = step(data, ctx)
    manifest = validate(data, ctx)
    if warnings is not None:
        warnings.extend(ctx.warnings)
    if ctx.problems or manifest is None:
        raise ManifestError(ctx.problems or ["the manifest is invalid"], source)
    return manifest


# --- a. YAML ------------------------------------------------------------------------------


def read_yaml(text: str, source: str = "") -> Data:
    """The top-level mapping, through the bounded loader (``yamlread``: duplicate keys, depth,
    alias expansion and oversized numbers refused at their line)."""
    try:
        data = yamlread.load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        hint = "" if "(" in str(exc.problem) else " (check the indentation and quoting here)"
        raise ManifestError([f"{where}{exc.problem or exc.context}{hint}"], source) from None
    except yaml.YAMLError as exc:  # the reader's: a control character, with its position
        raise ManifestError([f"invalid YAML: {' '.join(str(exc).split())}"], source) from None
    if data is None:
        raise ManifestError(["the file is empty (add 'agents:' with at least one agent)"], source)
    if not isinstance(data, dict):
        got = "a list" if isinstance(data, list) else repr(data)
        raise ManifestError([f"top level: expected a mapping with 'agents:', got {got}"], source)
    return data


def drop_extensions(data: Data, ctx: Context) -> Data:
    """compose's ``x-`` keys (top level and per agent) hold anchors; they are not settings."""
    out = {k: v for k, v in data.items() if not str(k).startswith("x-")}
    if isinstance(out.get("agents"), dict):
        out["agents"] = {n: drop_extensions(s, ctx) if isinstance(s, dict) else s
                         for n, s in out["agents"].items()}  # fmt: skip
    return out


# --- b, c. interpolation and class defaults -----------------------------------------------


def interpolate_all(data: Data, ctx: Context) -> Data:
    sub = Interpolator(ctx.variables)
    out: Data = sub.walk(data)
    ctx.problems.extend(sub.problems)
    ctx.warnings.extend(sub.warnings)
    return out


def class_defaults(data: Data, ctx: Context) -> Data:
    return apply_class_defaults(data)


def place_agents(data: Data, ctx: Context) -> Data:
    """``cluster.NAME`` is the defaults of each agent placed there's own ``NAME:`` block
    (its keys win): one address for the fleet, overridden where an agent says so."""
    cluster = data.get("cluster")
    if not isinstance(cluster, dict):
        return data

    def merged(name: str, spec: Any) -> tuple[Any, list[str]]:
        where = spec.get("placement") if isinstance(spec, dict) else None
        shared = cluster.get(where) if isinstance(where, str) else None
        own = spec.get(where) if isinstance(shared, dict) else None
        if isinstance(shared, dict) and isinstance(own, (dict, type(None))):
            spec = {**spec, where: {**shared, **(own or {})}}
        return spec, []
    return _each_agent(data, ctx, merged)


# --- d. paths -----------------------------------------------------------------------------


def project_name(directory: Path) -> str:
    """The directory's name made valid: lowercase, other characters replaced by '-'."""
    name = re.sub(r"[^a-z0-9_-]+", "-", directory.name.lower()).strip("-_")[:63]
    return name or "corral"


def resolve_paths(data: Data, ctx: Context) -> Data:
    out = dict(data)
    base = ctx.project_dir
    if isinstance(out.get("project_dir"), str):
        base = absolute(base, out["project_dir"])
    out["project_dir"] = str(base)
    out.setdefault("name", project_name(base))
    state = out.get("state_dir", ".corral")
    if isinstance(state, str):
        out["state_dir"] = str(absolute(base, state))
    volumes = Path(out["state_dir"]) / "volumes" if isinstance(state, str) else None
    agents = out.get("agents")
    if isinstance(agents, dict):
        out["agents"] = {n: _agent_paths(s, base, volumes) for n, s in agents.items()}
    secrets = out.get("secrets")
    if isinstance(secrets, dict):
        out["secrets"] = {n: _secret_paths(s, base) for n, s in secrets.items()}
    return out


def _agent_paths(spec: Any, base: Path, volumes: Path | None) -> Any:
    if not isinstance(spec, dict):
        return spec
    out = dict(spec)
    if isinstance(out.get("workdir", "."), str):
        out["workdir"] = str(absolute(base, out.get("workdir", ".")))
    if "env_file" in out:
        out["env_file"] = env_file_entries(out["env_file"], base)
    if isinstance(out.get("volumes"), list):
        out["volumes"] = [_volume_paths(v, base, volumes) for v in out["volumes"]]
    return out


def _volume_paths(value: Any, base: Path, volumes: Path | None) -> Any:
    """A source that looks like a path (``/``, ``.``, ``~``) is a bind mount made absolute;
    a bare name is a named volume kept in the state dir (compose's rule)."""
    try:
        (item,) = volume_entries([value])
    except ValueError:
        return value  # reported by validation, with its path
    source = item.get("source") if isinstance(item, dict) else None
    if not isinstance(source, str) or not source:
        return item
    if source.startswith(("/", ".", "~")):
        return {**item, "source": str(absolute(base, source))}
    if volumes is None:
        return item
    return {**item, "source": str(volumes / source), "named": True}


def _secret_paths(spec: Any, base: Path) -> Any:
    if not isinstance(spec, dict):
        return spec
    return {k: str(absolute(base, v)) if k in ("file", "env_file") and isinstance(v, str)
            else v for k, v in spec.items()}


# --- e, f. env files and isolation --------------------------------------------------------

AgentStep = Callable[[str, Any], tuple[Any, list[str]]]


def _each_agent(data: Data, ctx: Context, step: AgentStep) -> Data:
    agents = data.get("agents")
    if not isinstance(agents, dict):
        return data
    out: Data = {}
    for name, spec in agents.items():
        out[name], problems = step(str(name), spec)
        ctx.problems.extend(problems)
    return {**data, "agents": out}


def read_env_files(data: Data, ctx: Context) -> Data:
    return _each_agent(data, ctx, lambda name, spec: agent_env(name, spec, ctx.variables))


def choose_isolation(data: Data, ctx: Context) -> Data:
    hooks = driver_hooks()
    return _each_agent(data, ctx,
                       lambda n, spec: agent_isolation(n, spec, ctx.project_dir, hooks))


def check_strings(data: Data, ctx: Context) -> Data:
    """NULs, strings past what execve takes, paths past what the kernel takes."""
    ctx.problems.extend(string_problems(data))
    return data


STEPS: tuple[Callable[[Data, Context], Data], ...] = (
    drop_extensions,
    interpolate_all,
    class_defaults,
    place_agents,
    resolve_paths,
    read_env_files,
    choose_isolation,
    check_strings,
)


# --- g, h. validation and semantic checks -------------------------------------------------


def validate(data: Data, ctx: Context) -> Manifest | None:
    """Agents one by one (so one bad agent does not hide the others), then the rest."""
    raw_agents = data.get("agents", {})
    agents: dict[str, Agent] = {}
    if isinstance(raw_agents, dict):
        for name, spec in raw_agents.items():
            problem = agent_name_problem(name if isinstance(name, str) else "")
            if problem:
                ctx.problems.append(f"agents.{name}: {problem}")
            try:
                agents[str(name)] = adapter(Agent).validate_python(spec)
            except ValidationError as exc:
                ctx.problems.extend(pydantic_problems(exc, Agent, ("agents", name)))
    fleet: Manifest | None = None
    try:
        fleet = adapter(Manifest).validate_python(
            {**data, "agents": {}} if isinstance(raw_agents, dict) else data)
    except ValidationError as exc:
        ctx.problems.extend(pydantic_problems(exc, Manifest))
    for name, agent in agents.items():
        ctx.problems.extend(agent_problems(name, agent, ctx.drivers))
        cloud = cloud_problem(fleet, name, agent) if fleet is not None else None
        if cloud is not None:
            ctx.problems.append(f"{cloud[0]}: {cloud[1]}")
        if not files.is_dir(agent.workdir):
            ctx.warnings.append(f"agents.{name}.workdir: directory not found: {agent.workdir}")
    raw_secrets = data.get("secrets")
    declared: dict[str, Any] = raw_secrets if isinstance(raw_secrets, dict) else {}
    unknown = 0
    for name, agent in agents.items():
        for use in agent.secrets:
            if use.source not in declared:
                unknown += 1  # a suggestion scans every secret: only for the first few
                hint = did_you_mean(use.source, declared) if unknown <= MAX_UNKNOWN else ""
                ctx.problems.append(
                    f"agents.{name}.secrets.{use.source}: unknown secret{hint}; declare it under "
                    "the top-level secrets: (environment, file, env_file or command)")
    graph = raw_graph(raw_agents) if isinstance(raw_agents, dict) else {}
    ctx.problems.extend(dependency_problems(agents, graph))
    agents, unreachable, moved = host_network(agents)  # a level switch keeps what it reached
    ctx.problems.extend(unreachable)
    ctx.warnings.extend(moved)
    if ctx.problems:
        return None
    out: Manifest = adapter(Manifest).validate_python({**data, "agents": agents})
    return out
