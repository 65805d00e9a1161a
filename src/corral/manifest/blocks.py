"""The drivers' blocks of an agent, in the CLI: each block validated with the record its driver
declares (``drivers.registry``: ``venv:``, ``container:``, a third-party ``ray:``), its errors
reported with the block's path like any other key's, and the blocks written back as the agent's
own keys when the manifest is dumped (``corral config``, what ``corral up`` sends).

The records are plain ``lean.record`` classes the daemon decodes without pydantic; here
``pydantic.TypeAdapter`` validates them (``validation.adapter``), with the constraints the
records carry as ``Annotated`` metadata (``rules``). ``validated`` is the agent's own rule
(``spec.Agent.__rules__``): pydantic hands it the agent's mapping and its validation of the
core fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from corral.manifest import decode, spec
from corral.manifest.validation import AS_MODEL, adapter

_NO_CTX = {"extra_forbidden", "missing", "dict_type"}
HOLDER = "options"  # the agent's field holding them (``spec.Agent.options``)


def _registry() -> Any:
    from corral.manifest import routes

    return routes


def names() -> list[str]:
    """The installed blocks, where they always were first (``decode.LEGACY_BLOCKS``)."""
    known = _registry().blocks()
    return [*(k for k in decode.LEGACY_BLOCKS if k in known),
            *sorted(k for k in known if k not in decode.LEGACY_BLOCKS)]


def _line(error: Any, prefix: tuple[Any, ...]) -> Any:
    kind = AS_MODEL.get(error["type"], error["type"])
    line: dict[str, Any] = {"type": kind, "loc": (*prefix, *error["loc"]),
                            "input": error.get("input")}
    if error.get("ctx") and kind not in _NO_CTX:
        line["ctx"] = error["ctx"]
    return line


def validated(value: Any, handler: Callable[[Any], Any]) -> Any:
    """The agent's core keys through ``handler`` (pydantic's validation of its fields), each
    block through its record; every error of both in one ``ValidationError``, in the order of
    the agent's keys with the blocks where ``options`` is."""
    if not isinstance(value, dict):
        return handler(value)
    registry = _registry()
    core: dict[str, Any] = {}
    found: dict[str, Any] = {}
    lines: list[Any] = []
    for key, raw in value.items():
        record = registry.block(key) if isinstance(key, str) and key != HOLDER else None
        if key == HOLDER:
            lines.append({"type": "extra_forbidden", "loc": (key,), "input": raw})
        elif record is None:
            core[key] = raw
        elif raw is not None:
            try:
                found[key] = adapter(record).validate_python(raw)
            except ValidationError as exc:
                lines.extend(_line(e, (key,)) for e in exc.errors(include_url=False))
    try:
        result = handler({**core, HOLDER: found})
    except ValidationError as exc:
        lines = [_line(e, ()) for e in exc.errors(include_url=False)] + lines
    if lines:
        fields = (spec.ALIASES.get(f.name, f.name) for f in dataclasses.fields(spec.Agent))
        order = {key: i for i, key in enumerate(fields)}
        at = order.get(HOLDER, len(order))

        def rank(line: Any) -> int:
            head = str(line["loc"][0]) if line["loc"] else ""
            if line["type"] == "extra_forbidden":
                return len(order)  # pydantic's place for unknown keys: after the fields
            return at if head in found or registry.block(head) else order.get(head, -1)

        lines.sort(key=rank)
        raise ValidationError.from_exception_data("Agent", lines)
    return result
