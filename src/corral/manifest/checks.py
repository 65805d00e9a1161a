"""One pass over every key and string of the raw manifest, for what no program could take.

A NUL can come from YAML (``"\\0"``) or a dotenv file; a string past ``MAX_ARG_STRLEN`` is
refused by ``execve``; a path longer than the kernel takes is ENAMETOOLONG. Each would surface
as an exception when an instance starts (or as a traceback in the loader's own file checks),
so the loader reports them here, with their paths, once variables and env files are in.
"""

from __future__ import annotations

import os
import typing
from typing import Any

from corral.manifest.files import path_problem
from corral.manifest.hints import dotted
from corral.manifest.rules import FilePath

MAX_STRING = 131_071  # bytes: Linux's MAX_ARG_STRLEN (32 pages) for one argument or variable

# where paths are, agents' and secrets' names and list indexes as "*"; the drivers' blocks
# say theirs (``rules.FilePath``: ``block_paths``)
PATH_KEYS = frozenset({
    ("project_dir",), ("state_dir",),
    ("agents", "*", "workdir"), ("agents", "*", "env_file", "*", "path"),
    ("agents", "*", "volumes", "*", "source"), ("agents", "*", "volumes", "*", "target"),
    ("secrets", "*", "file"), ("secrets", "*", "env_file"),
})  # fmt: skip


def block_paths() -> frozenset[tuple[str, ...]]:
    """``("agents", "*", BLOCK, FIELD)`` for each path field of an installed driver's block."""
    from corral.manifest import routes

    out = set()
    for key, record in routes.blocks().items():
        for name, tp in typing.get_type_hints(record, include_extras=True).items():
            if _marked(tp):
                out.add(("agents", "*", key, name))
    return frozenset(out)


def _marked(tp: Any) -> bool:
    if typing.get_origin(tp) is typing.Annotated and any(
            isinstance(m, FilePath) for m in tp.__metadata__):
        return True
    return any(_marked(arg) for arg in typing.get_args(tp))


def _pattern(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    named = loc[:1] in (("agents",), ("secrets",))  # loc[1] is an agent's or secret's name
    return tuple("*" if isinstance(part, int) or (i == 1 and named) else part
                 for i, part in enumerate(loc))


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\0), which no argument, path or variable can hold"
    if len(text) > MAX_STRING // 4 and len(os.fsencode(text)) > MAX_STRING:
        return (f"is {len(os.fsencode(text))} bytes long; a string is at most {MAX_STRING} "
                "bytes (Linux's MAX_ARG_STRLEN, the most one argument or variable can be)")
    return None


def string_problems(data: Any) -> list[str]:
    """``path: problem`` for each bad key or string, depth first, without recursion."""
    out: list[str] = []
    paths = PATH_KEYS | block_paths()
    todo: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while todo:
        loc, value = todo.pop()
        if isinstance(value, dict):
            for key in value:
                if isinstance(key, str) and (problem := _text_problem(key)):
                    out.append(f"{dotted([*loc, key[:40]])}: the key {problem}")
            todo.extend(((*loc, k), v) for k, v in reversed(value.items()))  # file order
        elif isinstance(value, list):
            todo.extend(((*loc, i), v) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, str):
            problem = _text_problem(value)
            if problem is None and _pattern(loc) in paths:
                problem = path_problem(value)
            if problem:
                out.append(f"{dotted(loc) or 'top level'}: {problem}")
    return out
