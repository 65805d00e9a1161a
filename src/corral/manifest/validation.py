"""pydantic over the spec's records, in the CLI only: one ``TypeAdapter`` per record, built
once, validating what ``spec.py`` declares with the rules its ``Annotated`` markers carry
(``rules``). The loader validates the agents and the manifest with these, the drivers' blocks
are validated with them (``blocks``), and ``corral schema`` is their JSON Schema.

The daemon never imports this module (``decode`` reads the same markers without pydantic).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import TypeAdapter

from corral.manifest import spec

# pydantic's names for a dataclass's errors, spelled as a model's (what ``hints`` reads)
AS_MODEL = {"unexpected_keyword_argument": "extra_forbidden",
            "missing_keyword_only_argument": "missing", "missing_argument": "missing",
            "dataclass_type": "dict_type", "dataclass_args_type": "dict_type"}


@cache
def adapter(record: type) -> TypeAdapter[Any]:
    return TypeAdapter(record)


def agent(raw: Any) -> spec.Agent:
    """One agent's mapping as the manifest has it (shortcuts, driver blocks), validated;
    ``pydantic.ValidationError`` says what is wrong (``hints.pydantic_problems`` words it)."""
    out: spec.Agent = adapter(spec.Agent).validate_python(raw)
    return out


def manifest(raw: Any) -> spec.Manifest:
    """A whole manifest's mapping, validated (the loader's last step; ``load`` is the way in
    for a file: interpolation, paths, class defaults and the checks across agents)."""
    out: spec.Manifest = adapter(spec.Manifest).validate_python(raw)
    return out
