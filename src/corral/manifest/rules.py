"""Constraints written once, as ``Annotated`` metadata on a spec record's fields, and read by
both sides of the socket: pydantic (the CLI's validation, and ``corral schema``) through the
``__get_pydantic_core_schema__`` hook each marker carries, and ``decode.py`` (the daemon,
which must never import pydantic: benchmark S2) by looking at the markers themselves.

    Duration = Annotated[float, Within(bounds.DURATION), Before(parse_duration)]

- ``Before(func)``: a shortcut the CLI accepts and normalizes (``"10s"`` → 10.0, a port
  number → its string). What the daemon gets is already normal, so ``decode`` skips it.
- ``After(func)``: the CLI's check of the typed value, which may also normalize it (a list of
  names without its repeats); the daemon gets it normal too.
- ``Within(range)``: the number's bounds (``bounds.Range``); a list's items each.
- ``Problem(func)``: ``func(value)`` names what is wrong, or None. The CLI runs it before the
  type check (so its message wins over a pattern's), the daemon after decoding.

pydantic applies the metadata in order, each around what precedes it, so a type's own
constraints (``Within``, ``Pattern``) come first and what runs before them last.
- ``Pattern(regex)``: a string's shape, shown in the JSON Schema too.
- ``Length(n)``: a list's least length (the CLI's).
- ``Core`` / ``Whole``: the base of the core records, and their object-level rules.

Stdlib only at import: pydantic is imported inside the hooks, which only pydantic calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from corral.manifest import bounds
from corral.manifest.bounds import Range
from corral.manifest.units import parse_duration, parse_size


def _shortcut(func: Callable[..., Any] | str) -> Callable[..., Any]:
    """A function, or the name of one in ``normalize`` (which imports ``spec``: the spec
    names its shortcuts, and they are looked up when pydantic first builds a schema), or
    ``module.name`` of another module of ``corral.manifest`` (``blocks.validated``)."""
    if isinstance(func, str):
        import importlib

        module, _, name = func.rpartition(".")
        found: Callable[..., Any] = getattr(
            importlib.import_module(f"corral.manifest.{module or 'normalize'}"), name)
        return found
    return func


class _Step:
    """A function pydantic runs around a field's own validation (``Before``, ``After``)."""

    __slots__ = ("func",)
    _runs = "before"

    def __init__(self, func: Callable[[Any], Any] | str) -> None:
        self.func = func

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        wrap = getattr(core_schema, f"no_info_{self._runs}_validator_function")
        return wrap(_shortcut(self.func), handler(source))


class Before(_Step):
    __slots__ = ()


class After(_Step):
    __slots__ = ()
    _runs = "after"


class Length:
    """A list's least length (``command`` must not be empty); the CLI's rule, as before."""

    __slots__ = ("least",)

    def __init__(self, least: int) -> None:
        self.least = least

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        schema: dict[str, Any] = dict(handler(source))
        if schema.get("type") != "list":
            raise TypeError(f"Length() is for lists, not {source!r}")
        schema["min_length"] = self.least
        return schema


class Whole:
    """A record's rules over the whole object, in the CLI: ``before`` turns a shortcut into
    the mapping (``tcp: 6379``), ``after`` checks the fields together (a probe has exactly
    one kind) and raises ``ValueError`` naming the problem, ``wrap`` takes the mapping and
    pydantic's own validation of the fields (``func(value, handler)``: the agent's driver
    blocks). Each is a function or its name (``_shortcut``). They run before, wrap, after.
    A record says ``__rules__ = Whole(...)``; ``Core`` reads it."""

    __slots__ = ("after", "before", "wrap")

    def __init__(self, *, before: Callable[[Any], Any] | str | None = None,
                 after: Callable[[Any], Any] | str | None = None,
                 wrap: Callable[[Any, Any], Any] | str | None = None) -> None:
        self.before = before
        self.after = after
        self.wrap = wrap


class Core:
    """The base of the core's records (``spec.py``): unknown keys are refused, and the
    record's ``__rules__`` (a ``Whole``) wrap pydantic's own validation of its fields."""

    __slots__ = ()
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}
    __rules__ = Whole()

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        inner = dict(handler(source))
        whole = cls.__rules__
        if whole.after is None and whole.before is None and whole.wrap is None:
            return inner
        # the class's ref moves to the outermost schema: pydantic reuses a record's schema
        # by its ref where the record occurs again (liveness after readiness), rules and all
        ref = inner.pop("ref", None)
        schema: Any = inner
        if whole.after is not None:
            schema = core_schema.no_info_after_validator_function(_shortcut(whole.after),
                                                                  schema)
        if whole.wrap is not None:
            schema = core_schema.no_info_wrap_validator_function(_shortcut(whole.wrap),
                                                                 schema)
        if whole.before is not None:
            schema = core_schema.no_info_before_validator_function(_shortcut(whole.before),
                                                                   schema)
        if ref is not None:
            schema["ref"] = ref
        return schema


class Within:
    __slots__ = ("range",)

    def __init__(self, allowed: Range) -> None:
        self.range = allowed

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        schema: dict[str, Any] = dict(handler(source))
        if schema.get("type") not in ("int", "float"):
            raise TypeError(f"Within() is for numbers, not {source!r}")
        # the bounds as written (0, not 0.0): pydantic's messages quote them
        schema["gt" if self.range.low_open else "ge"] = self.range.low
        schema["le"] = self.range.high
        if schema["type"] == "float":
            schema["allow_inf_nan"] = False
        return schema

    def problem(self, value: Any) -> str | None:
        return None if value is None else self.range.problem(value)


class Problem:
    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], str | None]) -> None:
        self.func = func

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        func = self.func

        def check(value: Any) -> Any:
            problem = func(value) if isinstance(value, str) else None
            if problem:
                raise ValueError(problem)
            return value

        return core_schema.no_info_before_validator_function(check, handler(source))

    def problem(self, value: Any) -> str | None:
        return self.func(value) if isinstance(value, str) else None


class Pattern:
    __slots__ = ("regex",)

    def __init__(self, regex: str) -> None:
        self.regex = regex

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        schema: dict[str, Any] = dict(handler(source))
        if schema.get("type") != "str":
            raise TypeError(f"Pattern() is for strings, not {source!r}")
        schema["pattern"] = self.regex
        return schema

    def problem(self, value: Any) -> str | None:
        if isinstance(value, str) and not re.search(self.regex, value):
            return f"{value[:40]!r} does not match {self.regex}"
        return None


class FilePath:
    """Marks a string field that names a file or a dir on the host: the loader checks it as
    a path (NUL, length: ``checks.string_problems``). No effect on validation otherwise."""

    __slots__ = ()


class Blocks:
    """Marks the field holding the drivers' blocks (``Agent.options``): on the wire they are
    keys of the agent itself, each decoded with the record its driver declares."""

    __slots__ = ()


# what the daemon checks (``Before`` is the CLI's alone)
CHECKED = (Within, Problem, Pattern)


def _ports(value: Any) -> Any:
    """``ports: [8080]``: YAML's int is the port's string."""
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


# the type's own constraints first, then what wraps them (pydantic applies the metadata in
# order, each around the ones before it: a shortcut is undone before the bounds are checked)
Duration = Annotated[float, Within(bounds.DURATION), Before(parse_duration)]
Size = Annotated[int, Within(bounds.SIZE), Before(parse_size)]
# a published port: "8080" (the same number) or "18080:80" (host:inside)
PortMapping = Annotated[str, Pattern(r"^\d{1,5}(:\d{1,5})?$"),
                        Problem(bounds.port_mapping_problem)]
Ports = Annotated[list[PortMapping], Before(_ports)]
