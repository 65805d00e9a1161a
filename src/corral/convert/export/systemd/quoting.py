"""Writing values into unit files so systemd reads back exactly what was meant: ``%`` is a
specifier and ``$`` a variable in command lines, so both are doubled; a command argument or an
``Environment=`` assignment is double-quoted with C escapes (systemd.syntax(7))."""

from __future__ import annotations

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escaped(text: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in text)


def specifiers(text: str) -> str:
    """``%`` doubled: a literal in any setting that expands specifiers."""
    return text.replace("%", "%%")


def argument(text: str) -> str:
    """One argument of an ``Exec*=`` line, taken literally (no specifiers, no variables)."""
    body = _escaped(specifiers(text)).replace("$", "$$")
    plain = body and all(c.isalnum() or c in "-_./:=,+@" for c in text)
    return body if plain else f'"{body}"'


def command(argv: list[str], *, expand: bool = False) -> str:
    """A command line; ``expand`` keeps specifiers in the arguments (``%i``, ``%d``)."""
    if expand:
        return " ".join(a if all(c.isalnum() or c in "-_./:=,+@%" for c in a) and a
                        else f'"{_escaped(a).replace("$", "$$")}"' for a in argv)
    return " ".join(argument(a) for a in argv)


def assignment(name: str, value: str) -> str:
    """An ``Environment=`` item: the whole ``NAME=VALUE`` quoted, specifiers doubled."""
    return f'"{_escaped(specifiers(f"{name}={value}"))}"'
