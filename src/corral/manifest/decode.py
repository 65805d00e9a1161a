"""Normalized manifest JSON <-> the plain classes of ``spec.py``, strictly, without pydantic.

The CLI validates a manifest with pydantic over these same records (``validation``) and sends
the daemon their normalized dump (``dump``: ``class``, not ``class_``). The daemon decodes it
here. The socket is
private to its user, but scripts speak to it too, so nothing is trusted: an unknown key, a
missing field, a wrong type, a value outside a ``Literal`` or a number outside its range is a
``ManifestError`` naming the path, and agent names must be safe to use as file names under the
state dir. Shortcuts are the CLI's job; what arrives here is already in the one full form.

The rules come from the dataclasses' own annotations (``rules``: ``Within``, ``Problem``,
``Pattern`` on a field; the core's ranges are declared there once), so a field added to
``spec.py`` or to a driver's record is decoded without touching this module. An agent's
driver blocks (``container:``, ``ray:``) are its own keys on the wire; each is decoded with
the record its driver declares (``drivers.registry``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any, TypeVar

from corral.errors import ManifestError
from corral.manifest import bounds, rules, spec

T = TypeVar("T")

_hints: dict[type, dict[str, Any]] = {}


def _fields(cls: type) -> dict[str, Any]:
    """``{field name: resolved type}`` in declaration order, computed once per class."""
    if cls not in _hints:
        resolved = typing.get_type_hints(cls, include_extras=True)
        _hints[cls] = {f.name: resolved[f.name] for f in dataclasses.fields(cls)}
    return _hints[cls]


def _blocks_field(cls: type) -> str | None:
    """The field marked ``rules.Blocks`` (``Agent.options``), if ``cls`` has one."""
    for name, tp in _fields(cls).items():
        if typing.get_origin(tp) is typing.Annotated and any(
                isinstance(m, rules.Blocks) for m in tp.__metadata__):
            return name
    return None


def _block(key: str) -> type | None:
    from corral.manifest import routes  # the drivers declare the blocks

    return routes.block(key)


def _placements() -> Any:
    from corral.manifest import routes  # only a fleet placing agents on a cluster asks

    return routes.placements()


def _runs_without_command(agent: spec.Agent) -> bool:
    from corral.manifest import routes  # the isolation's driver says (an image's CMD)

    return routes.runs_without_command(agent)


# The built-in blocks were fields of the agent, in this order, before the drivers declared
# them. The spec hash and the dump keep them there (null when absent), so a stored hash does
# not move and ``corral config`` prints what it did; other blocks follow, by key.
LEGACY_BLOCKS = ("venv", "node", "vm", "container", "fake")


class _Invalid(Exception):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path or 'manifest'}: {problem}")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _value(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        out = _value(tp.__origin__, value, path)
        for marker in reversed(tp.__metadata__):  # the outermost first, as pydantic runs them
            if isinstance(marker, rules.CHECKED) and (problem := marker.problem(out)):
                raise _Invalid(path, problem)
        return out
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _value(inner, value, path)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        # by type too: True == 1 and 1.0 == 1, but neither is ``version: 1``
        if not any(a == value and type(a) is type(value) for a in allowed):
            raise _Invalid(path, f"expected one of {', '.join(map(repr, allowed))}, "
                                 f"got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise _Invalid(path, f"expected a list, got {_kind(value)}")
        (item,) = typing.get_args(tp)
        return [_value(item, v, f"{path}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _Invalid(path, f"expected a mapping, got {_kind(value)}")
        key, item = typing.get_args(tp)
        return {_value(key, k, f"{path}.{k}"): _value(item, v, f"{path}.{k}")
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _object(typing.cast(type, tp), value, path)
    return _scalar(tp, value, path)


def _scalar(tp: Any, value: Any, path: str) -> Any:
    # JSON has one number type: a float field takes an integer, never the other way round;
    # bool is an int subclass in Python but not a number in a manifest
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:  # json.loads takes NaN and Infinity; no manifest number is either
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        try:
            value = float(value) if ok else value
        except OverflowError:
            ok = False
        ok = ok and math.isfinite(value)
    elif tp is str:  # no argument, path or variable can hold a NUL
        ok = isinstance(value, str) and "\x00" not in value
    elif tp is typing.Any:  # a JSON value kept as given (``cluster:``: its blocks are
        return value      # validated into the placed agents' own)
    else:
        raise TypeError(f"spec field type {tp!r} has no decoding rule")
    if not ok:
        raise _Invalid(path, f"expected {tp.__name__}, got {_kind(value)} {value!r}")
    return value


def _object(cls: type[T], value: Any, path: str) -> T:
    if not isinstance(value, dict):
        raise _Invalid(path, f"expected a mapping, got {_kind(value)}")
    fields = _fields(cls)
    holder = _blocks_field(cls)
    keys = {spec.ALIASES.get(name, name): name for name in fields if name != holder}
    unknown = sorted(str(k) for k in value if k not in keys)
    found: dict[str, Any] = {}
    if holder is not None:
        for key in list(unknown):
            options = _block(key)
            if options is not None:
                unknown.remove(key)
                if value[key] is not None:
                    where = f"{path}.{key}" if path else key
                    found[key] = _object(options, value[key], where)
    if unknown:
        where = f"{path}." if path else ""
        raise _Invalid(f"{where}{unknown[0]}", f"unknown key (allowed: {', '.join(keys)})")
    missing = [key for key, name in keys.items() if key not in value and name in _required(cls)]
    if missing:
        raise _Invalid(path, f"missing {', '.join(missing)}")
    kwargs = {}
    for key, name in keys.items():
        if key in value:
            where = f"{path}.{key}" if path else key
            kwargs[name] = _value(fields[name], value[key], where)
    if holder is not None:
        kwargs[holder] = found
    return cls(**kwargs)


def _required(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def _check(manifest: spec.Manifest) -> None:
    for i, target in enumerate(manifest.logs.forward):
        if problem := spec.sink_kind_problem(target):
            raise _Invalid(f"logs.forward.{i}", problem)
    for i, target in enumerate(manifest.logs.forward):
        options = getattr(target, target.kind)
        for header, secret in getattr(options, "secret_headers", {}).items():
            if secret not in manifest.secrets:
                raise _Invalid(f"logs.forward.{i}.{target.kind}.secret_headers.{header}",
                               f"secret {secret!r} is not declared under the top-level "
                               "secrets: (declare it, then 'corral up')")
    if len(set(names := spec.sink_names(manifest.logs.forward))) != len(names):
        raise _Invalid("logs.forward", "two targets have one name: give each its own name:")
    # agent names (file names under the state dir) are checked as keys: ``spec.AgentName``
    for name, agent in manifest.agents.items():
        if (refused := cloud_problem(manifest, name, agent)) is not None:
            raise _Invalid(*refused)
        if not agent.command and not _runs_without_command(agent):
            raise _Invalid(f"agents.{name}", "missing command")
        if agent.placement not in (None, spec.LOCAL) and agent.isolation not in \
                _placements().get(agent.placement, ()):
            raise _Invalid(f"agents.{name}.placement", f"{agent.placement} does not run "
                                                       f"{agent.isolation} agents")
        for key in agent.env:  # execve takes neither
            if key == "" or "=" in key:
                raise _Invalid(f"agents.{name}.env", f"variable name {key!r} is not valid")
        for role, probe in (("readiness", agent.readiness), ("liveness", agent.liveness)):
            if probe is not None and sum(getattr(probe, k) is not None
                                         for k in spec.PROBE_KINDS) != 1:
                raise _Invalid(f"agents.{name}.{role}", "a probe needs exactly one of "
                                                        + ", ".join(spec.PROBE_KINDS))
            if probe is not None and probe.within is not None and probe.heartbeat is None:
                raise _Invalid(f"agents.{name}.{role}", bounds.WITHIN_ALONE)


# the levels whose agents can run the credential_process corral gives them (a host
# interpreter, by path): a container image or a guest has neither
AWS_LEVELS = ("process", "venv", "sandbox")


def cloud_problem(manifest: spec.Manifest, name: str, agent: spec.Agent
                  ) -> tuple[str, str] | None:
    """What is wrong with an agent's ``aws:`` in this fleet: (path, problem), or None."""
    from corral.manifest.cloud import policy_problem

    access = agent.aws
    for key in ("artifacts", "inputs"):
        if getattr(agent, key) is not None and access is None:
            return f"agents.{name}.{key}", ("needs the agent's aws: block: the daemon moves "
                                            "its files with the agent's own credentials")
    if access is None:
        return None
    where = f"agents.{name}.aws"
    if manifest.cloud.aws is None:
        return where, ("needs the fleet's cloud.aws block (cloud: {aws: {region: ...}}): "
                       "where corral's own AWS identity comes from")
    if agent.isolation not in AWS_LEVELS or agent.driver != agent.isolation:
        return where, (f"is for {', '.join(AWS_LEVELS)} agents on this host for now "
                       f"(this one is {agent.driver}); give it isolation: sandbox")
    if access.policy is not None and (problem := policy_problem(access.policy)):
        return f"{where}.policy", problem
    return None


def manifest(raw: Any) -> spec.Manifest:
    """The manifest from its normalized JSON; a ``ManifestError`` says what is wrong where."""
    try:
        out = _object(spec.Manifest, raw, "")
        _check(out)
    except _Invalid as exc:
        raise ManifestError([str(exc)]) from None
    return out


def forward_targets(raw: Any) -> list[spec.ForwardTarget]:
    """``logs.forward`` from its normalized JSON (the forwarder process reads it so)."""
    try:
        out = _value(list[spec.ForwardTarget], raw, "logs.forward")
        for i, target in enumerate(out):
            if problem := spec.sink_kind_problem(target):
                raise _Invalid(f"logs.forward.{i}", problem)
    except _Invalid as exc:
        raise ManifestError([str(exc)]) from None
    return typing.cast(list[spec.ForwardTarget], out)


def agent(raw: Any, path: str = "agent") -> spec.Agent:
    """One agent from its normalized JSON (``corral run``/``exec`` and tests build tasks)."""
    try:
        return _object(spec.Agent, raw, path)
    except _Invalid as exc:
        raise ManifestError([str(exc)]) from None


def dump(obj: Any, *, aliases: bool = True) -> Any:
    """The JSON form of a spec object; with ``aliases`` the YAML spelling (``class``). An
    agent's blocks are its keys, where ``LEGACY_BLOCKS`` says."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        holder = _blocks_field(type(obj))
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            if f.name == holder:
                out.update(flat_blocks(getattr(obj, f.name), aliases=aliases))
            else:
                key = spec.ALIASES.get(f.name, f.name) if aliases else f.name
                out[key] = dump(getattr(obj, f.name), aliases=aliases)
        return out
    if isinstance(obj, list):
        return [dump(v, aliases=aliases) for v in obj]
    if isinstance(obj, dict):
        return {k: dump(v, aliases=aliases) for k, v in obj.items()}
    return obj


def flat_blocks(options: dict[str, Any], *, aliases: bool = True) -> dict[str, Any]:
    """An agent's blocks as its keys: the built-ins always (null when absent), then the rest
    by key."""
    out = {key: dump(options.get(key), aliases=aliases) for key in LEGACY_BLOCKS}
    out.update({key: dump(options[key], aliases=aliases) for key in sorted(options)
                if key not in out})
    return out


# Fields added after the hashes were pinned: left out while they hold their defaults, so an
# upgrade restarts no instance that does not use them (the agent's own, then its probes')
ADDED_AGENT_FIELDS = ("schedule", "port", "on", "placement", "metrics", "aws", "artifacts",
                      "inputs", "publishes")
ADDED_AWS_FIELDS = ("publishes",)
ADDED_PROBE_FIELDS = ("silence", "heartbeat", "within")
ADDED_RESOURCE_FIELDS = ("gpus",)


def canonical(agent: spec.Agent) -> bytes:
    """The bytes a spec hash is taken over: field names (not aliases) in declaration order,
    compact, non-ASCII kept, ``replicas`` left out (scaling is not a change of spec). These
    are the bytes the pydantic models' ``model_dump_json(exclude={"replicas"})`` gave before
    the records replaced them, so stored hashes still match (a test pins one). Fields added
    since are left out while at their defaults (``ADDED_AGENT_FIELDS``, ``ADDED_PROBE_FIELDS``,
    ``ADDED_RESOURCE_FIELDS``, ``ADDED_AWS_FIELDS``)."""
    data = dump(agent, aliases=False)
    del data["replicas"]
    _drop_defaults(data, agent, ADDED_AGENT_FIELDS)
    _drop_defaults(data["resources"], agent.resources, ADDED_RESOURCE_FIELDS)
    if agent.aws is not None:
        _drop_defaults(data["aws"], agent.aws, ADDED_AWS_FIELDS)
    for name in ("readiness", "liveness"):
        probe = getattr(agent, name)
        if probe is not None:
            _drop_defaults(data[name], probe, ADDED_PROBE_FIELDS)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _drop_defaults(data: dict[str, Any], record: Any, names: tuple[str, ...]) -> None:
    fields = {f.name: f for f in dataclasses.fields(record)}
    for name in names:
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
        if getattr(record, name) == default:
            del data[name]


def spec_hash(agent: spec.Agent, *inputs: bytes) -> str:
    """The one spec hash: SHA-256 over ``canonical(agent)`` then each of ``inputs`` (what
    else an instance is made of: the driver's input files, the inherited environment, the
    image), 16 hex digits. The supervisor stores it; the container driver labels with it."""
    from corral.lean.sha import sha256

    digest = sha256(canonical(agent))
    for part in inputs:
        digest.update(part)
    return digest.hexdigest()[:16]
