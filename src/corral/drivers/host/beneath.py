"""Opening a bind source without following a link out of its root.

Every host path corral binds into a sandbox or container (workdir, volumes, data dir, venv,
node_modules, secrets dir) may be one an agent controls between two runs: an agent that
writes its workdir can replace ``out`` with ``ln -s / out`` and exit, and a bind of the
*path* on the restart would mount the host's ``/`` writable. So the path is checked and
mounted as one object: it is resolved component by component from its root with
``O_PATH|O_NOFOLLOW`` (what ``openat2(RESOLVE_BENEATH)`` does in the kernel, done here by
hand because Python has no openat2 and bwrap runs on kernels before 5.6):

- ``..`` goes to the real parent of where the walk is, never above the root;
- a relative link is followed where it is; an absolute one only when it names a path under
  the root (by the root's given or canonical spelling), then the walk restarts at the root;
- more than 40 links is a loop.

The result is an ``O_PATH`` descriptor of the very inode that passed: bwrap binds it
(``--bind-fd``) and closes it, so nothing can be swapped between the check and the mount.
The root itself is trusted: it is the manifest author's (the project dir) or corral's own (the
state dir, the secrets root), and no agent is given it writable.
"""

from __future__ import annotations

import contextlib
import os
import stat

MAX_LINKS = 40
_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class Escape(Exception):
    """The path leaves its root through a link or ``..``; ``str()`` says which and where."""


def under(path: str, root: str) -> bool:
    """``path`` is ``root`` or lies below it (lexically, both normalized)."""
    path, root = os.path.normpath(path), os.path.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def open_beneath(root: str, path: str) -> int:
    """An ``O_PATH`` fd of ``path`` (absolute and under ``root``, or relative to it),
    resolved without leaving ``root``. Raises Escape for a way out, OSError (ENOENT,
    ENOTDIR...) for a path that is not there; the caller owns the fd."""
    root = os.path.normpath(root)
    if os.path.isabs(path):
        if not under(path, root):
            raise Escape(f"{path} is not under {root}")
        path = os.path.relpath(os.path.normpath(path), root)
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    spellings = (root, os.readlink(f"/proc/self/fd/{root_fd}"))
    stack = [root_fd]  # the dirs walked through, the root first
    pending = list(reversed(_parts(path)))
    links = 0
    try:
        while pending:
            part = pending.pop()
            if part == "..":
                if len(stack) == 1:
                    raise Escape(f"{_where(stack)}/.. climbs out of {root}")
                os.close(stack.pop())
                continue
            fd = os.open(part, _FLAGS, dir_fd=stack[-1])
            if not stat.S_ISLNK(os.fstat(fd).st_mode):
                stack.append(fd)
                continue
            os.close(fd)
            links += 1
            if links > MAX_LINKS:
                raise Escape(f"{root}/{path}: more than {MAX_LINKS} links (a loop)")
            target = os.readlink(part, dir_fd=stack[-1])
            if not target.startswith("/"):
                pending.extend(reversed(target.split("/")))
                continue
            base = next((s for s in spellings if under(target, s)), None)
            if base is None:
                raise Escape(f"{_where(stack)}/{part} is a link to {target}, outside {root}")
            while len(stack) > 1:
                os.close(stack.pop())
            pending.extend(reversed(_parts(os.path.relpath(target, base))))
        return stack.pop()
    finally:
        for fd in stack:
            with contextlib.suppress(OSError):
                os.close(fd)


def _where(stack: list[int]) -> str:
    return os.readlink(f"/proc/self/fd/{stack[-1]}")


def path_of(fd: int) -> str:
    """Where an fd from ``open_beneath`` is, as the kernel names it now (canonical)."""
    return os.readlink(f"/proc/self/fd/{fd}")


def root_for(path: str, roots: list[str]) -> str:
    """The outermost of ``roots`` that ``path`` lies under; the path itself when none does
    (then only links inside it are checked: a host path outside every dir corral or its
    agents are given is the host's, resolved as the host resolves it)."""
    found = [r for r in roots if r and under(path, r)]
    return min(found, key=len) if found else os.path.normpath(path)


def link_free(path: str) -> bool:
    """Every component of absolute ``path`` is what it names, no link among them (walked
    with ``O_NOFOLLOW`` from ``/``). A canonical path (``path_of``) is link-free when made;
    a link in it later means someone swapped a component since."""
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in _parts(path):
            if part == "..":
                return False
            try:
                nxt = os.open(part, _FLAGS, dir_fd=fd)
            except OSError:
                return False
            os.close(fd)
            fd = nxt
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                return False
        return True
    finally:
        os.close(fd)
