"""The drivers' blocks of an agent, in the CLI: each block validated with the record its driver
declares (``drivers.registry``: ``venv:``, ``container:``, a third-party ``ray:``), its errors
reported with the block's path like any other key's, and the blocks written back as the agent's
own keys when the manifest is dumped (``corral config``, what ``corral up`` sends).

The records are plain ``lean.record`` classes the daemon decodes without pydantic; here
``pydantic.TypeAdapter`` validates them, built once per record, with the constraints the
records carry as ``Annotated`` metadata (``rules``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from corral.manifest import decode

# pydantic's names for a dataclass's errors, spelled as a model's (what ``hints`` reads)
AS_MODEL = {"unexpected_keyword_argument": "extra_forbidden",
             "missing_keyword_only_argument": "missing", "missing_argument": "missing",
             "dataclass_type": "dict_type", "dataclass_args_type": "dict_type"}
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


@cache
def adapter(record: type) -> TypeAdapter[Any]:
    return TypeAdapter(record)


def _line(error: Any, prefix: tuple[Any, ...]) -> Any:
    kind = AS_MODEL.get(error["type"], error["type"])
    line: dict[str, Any] = {"type": kind, "loc": (*prefix, *error["loc"]),
                            "input": error.get("input")}
    if error.get("ctx") and kind not in _NO_CTX:
        line["ctx"] = error["ctx"]
    return line


def validated(value: dict[str, Any], handler: Callable[[Any], Any], fields: list[str]) -> Any:
    """The agent's core keys through ``handler`` (the model's own validation), each block
    through its record; every error of both in one ``ValidationError``, in the order of
    ``fields`` (the model's keys) with the blocks where ``options`` is."""
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


def flattened(data: Any, options: dict[str, Any]) -> Any:
    """The model's dump with the blocks as agent keys where they always were (after
    ``stop``; ``decode.LEGACY_BLOCKS``), so the dump decodes to the same ``spec.Agent``."""
    if not isinstance(data, dict):
        return data
    flat = decode.flat_blocks(options)
    if "stop" not in data:
        return {**data, **flat}
    out: dict[str, Any] = {}
    for key, item in data.items():
        out[key] = item
        if key == "stop":
            out.update(flat)
    return out
