"""Frozen records that share one ``__init__``, ``__eq__``, ``__hash__`` and ``__repr__``.

``dataclasses`` writes and compiles those methods anew for every class, and a frozen
``__init__`` is large (one ``object.__setattr__`` line per field): the 23 classes of the
manifest's spec alone kept ~0.5 MB of code objects resident for the daemon's whole life, in a
budget measured in single megabytes (benchmark S2). ``@record`` keeps everything else a frozen,
slotted dataclass (fields, defaults and factories, ``replace``, ``fields``, keyword-only
construction, the typed constructor mypy sees); only these four methods are shared.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, fields
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")


class Record:
    """The shared methods; they behave as the generated ones would (field by field, in
    declaration order, same class only)."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        specs = _all_fields(type(self))  # records have no init=False fields
        positional = [f for f in specs if not f.kw_only]
        if len(args) > len(positional):
            raise TypeError(f"{type(self).__name__}() takes {len(positional)} positional "
                            f"arguments but {len(args)} were given")
        given = dict(zip((f.name for f in positional), args, strict=False))
        for name in kwargs:
            if name in given:
                raise TypeError(f"{type(self).__name__}() got multiple values for {name!r}")
        given.update(kwargs)
        for f in specs:
            if f.name in given:
                value = given.pop(f.name)
            elif f.default is not MISSING:
                value = f.default
            elif f.default_factory is not MISSING:
                value = f.default_factory()
            else:
                raise TypeError(f"{type(self).__name__}() missing argument {f.name!r}")
            object.__setattr__(self, f.name, value)
        if given:
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument "
                            f"{next(iter(given))!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in _all_fields(type(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}"
                          for f in _all_fields(type(self)))
        return f"{type(self).__qualname__}({shown})"


_FIELDS: dict[type, tuple[Field[Any], ...]] = {}


def _all_fields(cls: type) -> tuple[Field[Any], ...]:
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = fields(cls)
    return found



@overload
def record(cls: type[T], /) -> type[T]: ...
@overload
def record(*, kw_only: bool = False) -> Any: ...


@dataclass_transform(frozen_default=True)
def record(cls: type[T] | None = None, /, *, kw_only: bool = False) -> Any:
    """``@dataclass(frozen=True, slots=True)`` for a ``Record`` subclass, without generating
    ``__init__``, ``__eq__``, ``__hash__`` and ``__repr__`` (it inherits ``Record``'s)."""

    def wrap(c: type[T]) -> type[T]:
        if not issubclass(c, Record):
            raise TypeError(f"{c.__name__} must derive from corral.lean.record.Record")
        return dataclass(c, frozen=True, slots=True, kw_only=kw_only, eq=False, repr=False,
                         init=False)

    return wrap if cls is None else wrap(cls)
