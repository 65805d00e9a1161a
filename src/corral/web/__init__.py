"""The web dashboard's front end: plain ES modules and one stylesheet in ``static/``, shipped
as package data and served as they are (no build step, nothing fetched from elsewhere).

The daemon reads a file here only when a browser asks for it (``api.server``'s ``/`` and
``/assets/NAME`` routes); nothing of the dashboard is loaded while it is off (S2).
"""

from __future__ import annotations

import os

STATIC = os.path.join(os.path.dirname(__file__), "static")
PAGE = "index.html"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}


def asset(name: str) -> tuple[bytes, str] | None:
    """The file ``name`` of ``static/`` (a plain file name: no directory, no dot first) and
    its content type; None when there is no such asset."""
    kind = _TYPES.get(os.path.splitext(name)[1])
    if kind is None or not name or name[0] == "." or "/" in name or "\\" in name:
        return None
    try:
        with open(os.path.join(STATIC, name), "rb") as f:
            return f.read(), kind
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def names() -> list[str]:
    """The assets there are, for the tests and the docs."""
    return sorted(n for n in os.listdir(STATIC) if asset(n) is not None)
