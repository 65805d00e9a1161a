"""Turning mistakes into messages that say where, what, and how to fix it.

``did_you_mean`` is compose's habit ("(did you mean 'working_dir'?)"), widened with a small table
of compose key names so a compose user typing ``environment:`` is pointed at ``env:``.
``pydantic_problems`` rewrites pydantic's errors into ``agents.web.restart.policy: ...`` lines
using the YAML key names (``class``, not ``class_``) and list indexes as ``[0]``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Union, cast, get_args, get_origin, get_type_hints

from pydantic import ValidationError

from corral.manifest import rules
from corral.manifest.spec import ALIASES
from corral.manifest.validation import AS_MODEL

# compose (and supervisor / process-compose) spellings of concepts corral names differently.
SYNONYMS: dict[str, str] = {
    "environment": "env",
    "working_dir": "workdir",
    "working_directory": "workdir",
    "cwd": "workdir",
    "healthcheck": "readiness",
    "readiness_probe": "readiness",
    "liveness_probe": "liveness",
    "stop_signal": "stop",
    "stop_grace_period": "stop",
    "restart_policy": "restart",
    "scale": "replicas",
    "deploy": "replicas",
    "depends": "depends_on",
    "requires": "depends_on",
    "envfile": "env_file",
    "env_files": "env_file",
    "services": "agents",
    "processes": "agents",
    "programs": "agents",
    "type": "class",
    "kind": "class",
    "driver": "isolation",
    "runtime": "isolation",
    "args": "command",
    "cmd": "command",
    "entrypoint": "command",
    "interval": "period",
    "retries": "failure_threshold",
    "start_period": "initial_delay",
}


def did_you_mean(word: object, choices: Iterable[object]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ``""`` when nothing is close."""
    options = [str(c) for c in choices]
    text = str(word)
    synonym = SYNONYMS.get(text.lower())
    if synonym in options:
        return f" (did you mean '{synonym}'?)"
    lowered = {o.lower(): o for o in options}
    if text.lower() in lowered:
        return f" (did you mean '{lowered[text.lower()]}'?)"
    close = difflib.get_close_matches(text, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def dotted(loc: Sequence[object]) -> str:
    """``("agents", "web", "env_file", 0, "path")`` → ``agents.web.env_file[0].path``."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _candidates(tp: Any) -> list[Any]:
    """The concrete types behind ``Annotated[...]``, ``X | None`` and unions."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _candidates(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [c for arg in get_args(tp) for c in _candidates(arg)]
    return [tp]


def _is_model(tp: Any) -> bool:
    """A class whose mapping ``hints`` can name the keys of: a record of the spec or of a
    driver (a dataclass, validated by pydantic through ``manifest.validation``)."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def members(model: type) -> list[tuple[str, Any]]:
    """``(key a user writes, its type)`` for each field of ``model``: the YAML spelling
    (``class``), and the agent's driver blocks in the place of the field holding them."""
    hints = get_type_hints(model, include_extras=True)
    out: list[tuple[str, Any]] = []
    for f in dataclasses.fields(cast(Any, model)):
        tp = hints[f.name]
        if get_origin(tp) is Annotated and any(isinstance(m, rules.Blocks)
                                               for m in tp.__metadata__):
            from corral.manifest import blocks, routes

            out.extend((key, routes.block(key)) for key in blocks.names())
        else:
            out.append((ALIASES.get(f.name, f.name), tp))
    return out


def field_names(model: type) -> list[str]:
    """The keys a user may write for ``model`` (aliases where they exist)."""
    return [key for key, _ in members(model)]


def model_at(root: type, loc: Sequence[object]) -> type | None:
    """The model class that validates the mapping found at ``loc`` below ``root``."""
    current: list[Any] = [root]
    for part in loc:
        following: list[Any] = []
        for tp in current:
            if _is_model(tp):
                for key, annotation in members(tp):
                    if part == key:
                        following.extend(_candidates(annotation))
            elif get_origin(tp) is dict and not isinstance(part, int):
                following.extend(_candidates(get_args(tp)[1]))
            elif get_origin(tp) is list and isinstance(part, int):
                following.extend(_candidates(get_args(tp)[0]))
        current = following
    models = [tp for tp in current if _is_model(tp)]
    return models[0] if models else None


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _message(error: Any, root: type, loc: tuple[Any, ...]) -> str:
    kind: str = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        model = model_at(root, loc[:-1])
        choices = field_names(model) if model else []
        hint = did_you_mean(loc[-1], choices)
        if not hint and choices:
            hint = f" (allowed here: {', '.join(choices)})"
        return f"unknown key{hint}"
    if kind == "missing":
        return f"required key is missing (add '{loc[-1]}: ...')" if loc else "required"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping of settings, got {_shown(value)}"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        return f"{_shown(value)} is not one of {expected}{did_you_mean(value, choices)}"
    if kind == "too_short" and error.get("ctx", {}).get("min_length") == 1:
        return "must not be empty"
    message: str = error["msg"]
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if kind == "assertion_error":
        return message.removeprefix("Assertion failed, ")
    return f"{message[:1].lower()}{message[1:]} (got {_shown(value)})"


MAX_UNKNOWN = 20  # unknown keys reported one by one per mapping; the rest are counted


def pydantic_problems(
    exc: ValidationError, root: type, prefix: Sequence[object] = ()
) -> list[str]:
    """One ``path: problem (hint)`` line per pydantic error, in the order pydantic found them.

    Linear in the errors: an agent with 20,000 unknown keys gets the first ``MAX_UNKNOWN``
    with a "did you mean" each and one line counting the rest (a suggestion per key and a
    list scan for duplicates took 19 s)."""
    # a record's errors (the spec's, a driver's) named as a model's
    errors: list[Any] = [{**e, "type": AS_MODEL.get(e["type"], e["type"])}
                         for e in exc.errors(include_url=False)]
    unknown: dict[tuple[Any, ...], int] = {}  # mapping -> its unknown keys
    messages: dict[int, str] = {}
    for i, error in enumerate(errors):
        if error["type"] == "extra_forbidden":
            parent = tuple(error["loc"][:-1])
            unknown[parent] = unknown.get(parent, 0) + 1
            if unknown[parent] <= MAX_UNKNOWN:
                messages[i] = _message(error, root, tuple(error["loc"]))
    # "comand: unknown key (did you mean 'command'?)" already says what "command: missing" would
    suggested = {(*errors[i]["loc"][:-1], text.split("'")[1])
                 for i, text in messages.items() if text.startswith("unknown key (did")}
    out: list[str] = []
    seen: set[str] = set()
    for i, error in enumerate(errors):
        loc = tuple(error["loc"])
        if error["type"] == "missing" and loc in suggested:
            continue
        if error["type"] == "extra_forbidden" and i not in messages:
            continue
        path = dotted([*prefix, *loc]) or "top level"
        line = f"{path}: {messages.get(i) or _message(error, root, loc)}"
        if line not in seen:
            seen.add(line)
            out.append(line)
    for parent, count in unknown.items():
        if count > MAX_UNKNOWN:
            model = model_at(root, parent)
            allowed = f" (allowed here: {', '.join(field_names(model))})" if model else ""
            out.append(f"{dotted([*prefix, *parent]) or 'top level'}: and {count - MAX_UNKNOWN} "
                       f"more unknown keys{allowed}")
    return out
