"""The manifest as users write it, for editors (JSON Schema 2020-12), and as corral reads it
(``dump``, the normalized YAML that ``corral config`` prints).

The schema starts from pydantic's schema of the spec's records (``spec.Manifest``), so
titles, defaults, enums, ranges, patterns and ``additionalProperties: false`` stay in step
with them, then widens the spots where the loader
accepts a shortcut (``command: "a b"``, ``restart: on-failure:3``, ``depends_on: [db]``,
``tcp: 6379``, ``period: 10s``, ...). Each installed driver's blocks (``venv:``,
``container:``, a third-party ``ray:``) come from the records the drivers declare, through
pydantic's schema of them; the blocks a driver hides (the fake's) are left out. Point an
editor at it with ``# yaml-language-server: $schema=corral.schema.json``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import yaml

from corral.manifest import blocks, decode, rules
from corral.manifest.bounds import MAX_DURATION, MAX_SIZE
from corral.manifest.spec import AGENT_NAME, Manifest
from corral.manifest.units import parse_duration, parse_size
from corral.manifest.validation import adapter
from corral.manifest.variables import escaped

DRAFT = "https://json-schema.org/draft/2020-12/schema"
KNOWN_DRIVERS = ("process", "venv", "fake", "sandbox", "container", "vm")

Shape = dict[str, Any]
_STR: Shape = {"type": "string"}
_NULL: Shape = {"type": "null"}
_STR_LIST: Shape = {"type": "array", "items": _STR}
# a number alone, or number-unit parts; each part ends in a unit, so a run of digits has one
# reading (the nested ``(\d+\s*(unit)?)+`` this replaces backtracked exponentially)
_DURATION: list[Shape] = [
    {"type": "number", "minimum": 0, "maximum": MAX_DURATION},
    {"type": "string",
     "pattern": r"^\s*\d+(\.\d+)?\s*((ms|s|m|h|d)(\s*\d+(\.\d+)?\s*(ms|s|m|h|d))*\s*)?$"},
]
_SIZE: list[Shape] = [
    {"type": "integer", "minimum": 0, "maximum": MAX_SIZE},
    {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([kKmMgGtT]?[iI]?[bB]?)$"},
]
_PORT: Shape = {"type": "integer", "minimum": 1, "maximum": 65535}
_PORT_TEXT: Shape = {"type": "string", "pattern": r"^\s*\d+\s*$|\$"}  # "8080", "${PORT}"
_X = {"^x-": {"description": "Extension field, ignored (a place for YAML anchors)."}}

# Help text shown by editors; the records' docstrings cover the nested blocks.
DESCRIPTIONS: dict[str, dict[str, str]] = {
    "Manifest": {
        "version": "Manifest format version.",
        "name": "Project name. Default: the project directory's name.",
        "project_dir": "Where relative paths start. Default: the manifest's directory.",
        "state_dir": "Where corral keeps state, logs and venvs. Default: PROJECT/.corral.",
        "agents": "The agents to run, by name (lowercase letters, digits, '-', '_').",
        "inherit_env": "Variables of corral's environment every agent gets (names or globs "
        "such as LC_*), before each agent's own inherit_env.",
        "dashboard": "The web dashboard ({port: N}), served by the daemon on 127.0.0.1 only; "
        "'corral dashboard' prints the one-time link that opens it.",
        "cloud": "Cloud accounts corral reaches for its agents' identities: aws: {region, "
        "profile | role_arn, endpoint_url, refresh_before}.",
        "cluster": "Clusters agents can be placed on (ray: {address: ray://HOST:10001 | "
        "auto}): each block the defaults of the placed agents' own block of that name.",
    },
    "Agent": {
        "description": "Free text shown by 'corral ps' and the web UI.",
        "class": "compute (run to completion), io (restart with backoff; the default), "
        "service (always up, needs a health check), ai (restart on failure).",
        "isolation": "Driver that runs the agent. Default: venv with a venv: block, else process.",
        "command": "Program and arguments: a list, or a string split like a shell would. "
        "A container agent of an image may leave it out: the image's own command runs.",
        "shell": "Run the command with /bin/sh -c.",
        "workdir": "Working directory, relative to the project directory.",
        "env": "Environment variables: a map, or a list of KEY=VALUE. A key without a value "
        "is taken from corral's environment.",
        "env_file": "dotenv files read into env (env wins); paths relative to the project.",
        "inherit_env": "Variables of corral's environment the agent gets, by name or glob "
        "(PYTHONPATH, HTTP*_PROXY); agents start from a clean environment (PATH, HOME, USER, "
        "LANG, LC_*, TZ, XDG_*...). A glob never matches a credential-looking name.",
        "replicas": "Number of instances (AGENT.1, AGENT.2, ...).",
        "depends_on": "Agents to wait for: a list of names or a map name → {condition, "
        "required, restart}.",
        "readiness": "Probe deciding when the agent is ready (dependents wait for it).",
        "liveness": "Probe deciding when a running agent is stuck (action: restart by default).",
        "ready_log_line": "Regular expression: the agent is ready once a log line matches.",
        "restart": "no | on-failure | always | unless-stopped, optionally ':N' max restarts, "
        "or a full policy. Default depends on class.",
        "stop": "Stop signal and grace period before the process group is killed.",
        "venv": "Per-agent Python environment (requirements.txt, pyproject.toml, packages).",
        "resources": "CPU, memory and pid limits.",
        "placement": "Where it runs: local (this host, the default) or a cluster (ray); "
        "'corral up --target ray' places every agent that can go.",
        "labels": "Free-form string labels.",
        "on": "Hooks: host commands run on the agent's fatal, restart and oom events, the "
        "event as JSON on stdin (a command, or a list; each a string, an argv or "
        "{command, timeout}).",
        "metrics": "Its own Prometheus metrics ({port, path: /metrics}): corral scrapes each "
        "instance when its own /metrics is scraped and re-exposes the samples with agent and "
        "instance labels.",
        "aws": "Its AWS identity: {role: ARN, policy: {inline session policy}, duration: 1h}. "
        "corral assumes the role with the policy and gives the agent an AWS config whose "
        "credential_process fetches its temporary credentials from the daemon; no keys in "
        "its environment. Without it, no AWS credentials at all.",
        "artifacts": "Files of its workdir the daemon uploads with its own aws: credentials: "
        "{to: s3://BUCKET/PREFIX/{instance}/, paths: [out/**], when: exit | every 5m} "
        "(multipart, SHA-256 checked; an 'artifacts' event says each upload).",
        "inputs": "Objects the daemon downloads with its own aws: credentials before each "
        "start, only those that changed: {from: s3://BUCKET/PREFIX/, to: data}; none there "
        "blocks the agent.",
    },
    "Probe": {
        "silence": "Fails when the agent printed nothing on stdout or stderr for this long.",
        "heartbeat": "A file the agent touches, relative to its workdir; fails when it is "
        "older than within.",
        "within": "With heartbeat: the file's greatest age (default 60s).",
    },
}


def model_classes(tp: Any, found: dict[str, type]) -> dict[str, type]:
    """The spec's records below ``tp`` (``rules.Core``), by name."""
    import dataclasses

    if isinstance(tp, type) and issubclass(tp, rules.Core) and dataclasses.is_dataclass(tp):
        if tp.__name__ in found:
            return found
        found[tp.__name__] = tp
        for hint in get_type_hints(tp, include_extras=True).values():
            model_classes(hint, found)
    for arg in get_args(tp):
        model_classes(arg, found)
    return found


def _widen(prop: dict[str, Any], *shapes: dict[str, Any], nullable: bool = False) -> None:
    """Replace a property's type with ``anyOf`` the given shapes; keep title/default/docs."""
    for key in ("type", "anyOf", "$ref", "items", "additionalProperties", "ge", "minimum",
                "maximum"):
        prop.pop(key, None)
    prop.pop("minItems", None)
    prop["anyOf"] = [*shapes, _NULL] if nullable else list(shapes)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _units(defs: dict[str, Any]) -> None:
    for name, record in model_classes(Manifest, {}).items():
        if name in defs:
            _record_units(record, defs[name])


def _shortcuts(defs: dict[str, Any], drivers: Collection[str]) -> None:
    agent = defs["Agent"]["properties"]
    _widen(agent["command"], _STR, _STR_LIST)
    # left out only by a container agent of an image or a build (``agent_levels``)
    imaged = {"required": ["isolation", "container"], "properties": {
        "isolation": {"const": "container"},
        "container": {"anyOf": [{"required": ["image"]}, {"required": ["build"]}]}}}
    defs["Agent"]["anyOf"] = [{"required": ["command"]}, imaged]
    scalar = {"type": ["string", "number", "boolean", "null"]}
    _widen(agent["env"], {"type": "object", "additionalProperties": scalar}, _STR_LIST)
    file = {"anyOf": [_STR, _ref("EnvFile")]}
    _widen(agent["env_file"], _STR, _ref("EnvFile"), {"type": "array", "items": file})
    dep = {"anyOf": [_ref("Dependency"), _NULL]}
    _widen(agent["depends_on"], _STR, _STR_LIST, {"type": "object", "additionalProperties": dep})
    names = ["no", "on-failure", "always", "unless-stopped"]
    counted = {"type": "string", "pattern": r"^(on-failure|always|unless-stopped):\d+$"}
    _widen(agent["restart"], {"enum": names}, counted, {"const": False}, _ref("RestartPolicy"))
    agent["restart"].pop("default", None)
    agent["isolation"]["examples"] = sorted({*drivers, *KNOWN_DRIVERS})
    agent["isolation"].pop("default", None)
    probe = defs["Probe"]["properties"]
    _widen(probe["exec"], _STR, _STR_LIST, _ref("ExecCheck"), nullable=True)
    for kind, check in (("tcp", "TcpCheck"), ("http", "HttpCheck")):
        _widen(probe[kind], _PORT, _PORT_TEXT, _ref(check), nullable=True)
    _widen(probe["log_line"], _STR, _ref("LogLineCheck"), nullable=True)
    _widen(defs["ExecCheck"]["properties"]["command"], _STR, {**_STR_LIST, "minItems": 1})
    argv = {**_STR_LIST, "minItems": 1}
    _widen(defs["Hook"]["properties"]["command"], _STR, argv)
    hook = {"anyOf": [_STR, argv, _ref("Hook")]}
    for event in ("fatal", "restart", "oom"):
        _widen(defs["EventHooks"]["properties"][event], _STR, _ref("Hook"),
               {"type": "array", "items": hook})
    _widen(defs["StopPolicy"]["properties"]["signal"], _STR, {"type": "integer", "minimum": 1})
    pattern = next(s["pattern"] for s in agent["user"]["anyOf"] if "pattern" in s)
    _widen(agent["user"], {"type": "string", "pattern": pattern},
           {"type": "integer", "minimum": 0, "maximum": 0xFFFFFFFE}, nullable=True)


def _record_units(record: type, shape: dict[str, Any]) -> None:
    """Widen a driver record's durations and sizes (``rules.Before(parse_duration)``)."""
    props = shape.get("properties", {})
    for name, tp in get_type_hints(record, include_extras=True).items():
        found = [m.func for arg in _annotated(tp) for m in arg.__metadata__
                 if isinstance(m, rules.Before)]
        nullable = type(None) in get_args(tp)
        ranges = [m.range for arg in _annotated(tp) for m in arg.__metadata__
                  if isinstance(m, rules.Within)]
        if name in props and parse_duration in found:
            number = dict(_DURATION[0])
            if ranges:  # a duration of its own bounds (an STS session: 15 min to 12 h)
                number.update(minimum=ranges[0].low, maximum=ranges[0].high)
            _widen(props[name], number, _DURATION[1], nullable=nullable)
        elif name in props and parse_size in found:
            _widen(props[name], *_SIZE, nullable=nullable)


def _annotated(tp: Any) -> list[Any]:
    if get_origin(tp) is Annotated:
        return [tp]
    return [a for arg in get_args(tp) for a in _annotated(arg)]


def _driver_blocks(defs: dict[str, Any]) -> None:
    """Each visible driver block as an agent key, its record under ``$defs``, in the place
    the agent's ``options`` field holds them."""
    from corral.manifest import routes

    hidden = routes.hidden()
    agent = defs["Agent"]
    props: dict[str, Any] = {}
    for key, prop in agent["properties"].items():
        if key != blocks.HOLDER:
            props[key] = prop
            continue
        for name in blocks.names():
            record = routes.block(name)
            if name in hidden or record is None:
                continue
            shape = adapter(record).json_schema(ref_template="#/$defs/{model}")
            for nested_name, nested in shape.pop("$defs", {}).items():
                defs.setdefault(nested_name, nested)
            _record_units(record, shape)
            for nested_record in _records(record):
                if nested_record.__name__ in defs and nested_record is not record:
                    _record_units(nested_record, defs[nested_record.__name__])
            defs[record.__name__] = shape
            props[name] = {"anyOf": [_ref(record.__name__), _NULL], "default": None}
    agent["properties"] = props


def _records(record: type) -> list[type]:
    """The record classes a record's fields name (nested blocks, like a fake script's steps)."""
    import dataclasses

    out = []
    for tp in get_type_hints(record).values():
        stack = [tp]
        while stack:
            arg = stack.pop()
            if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                out.append(arg)
            stack.extend(get_args(arg))
    return out


def json_schema(drivers: Collection[str] | None = None) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) for corral.yaml as users write it; ``drivers``: the
    isolation names to suggest (default: every installed driver)."""
    if drivers is None:
        from corral.manifest import routes

        drivers = routes.drivers()
    schema = adapter(Manifest).json_schema(by_alias=True)
    defs: dict[str, Any] = schema["$defs"]
    _units(defs)
    _shortcuts(defs, drivers)
    _driver_blocks(defs)
    for model, docs in DESCRIPTIONS.items():
        props = schema["properties"] if model == "Manifest" else defs[model]["properties"]
        for key, text in docs.items():
            if key in props:
                props[key]["description"] = text
    for target in (schema, defs["Agent"]):
        target["patternProperties"] = _X
    schema["properties"]["agents"]["propertyNames"] = {"pattern": AGENT_NAME}
    for key in ("project_dir", "state_dir"):
        schema["properties"][key].pop("default", None)
    schema.pop("required", None)  # name defaults to the project directory's name
    schema.pop("title", None)
    return {"$schema": DRAFT, "title": "corral manifest", **schema}


def dump(manifest: Manifest) -> str:
    """The normalized manifest as YAML: every default filled in, paths absolute, keys in model
    order, ``$`` escaped as ``$$``. ``load_text(dump(m), ...)`` gives back ``m``."""
    data = escaped(decode.dump(manifest))
    text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return text
