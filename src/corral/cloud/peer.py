"""Who is on the other end of an instance's credential socket.

The socket lives in the instance's private dir (its identity's, 0700 or 0500), so only that
identity (and root) can reach it. Agents that run as corral's own user share that identity,
so the broker also asks the kernel (``SO_PEERCRED``) for the connecting process and accepts
it only inside the instance's own process tree: a neighbour of the same uid is refused. A
process of the agent that left its tree (a double-forked daemon, reparented) is refused too.
"""

from __future__ import annotations

import socket
import struct

_UCRED = struct.Struct("3i")  # pid, uid, gid


def credentials(sock: socket.socket) -> tuple[int, int, int]:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


def parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: fields follow the last ')'
    rest = stat[stat.rfind(b")") + 2:].split()
    return int(rest[1]) if len(rest) > 1 else None


def within(pid: int, root: int, *, depth: int = 128) -> bool:
    """``pid`` is ``root`` or one of its descendants."""
    current: int | None = pid
    for _ in range(depth):
        if current is None or current <= 1:
            return False
        if current == root:
            return True
        current = parent(current)
    return False


def refusal(sock: socket.socket, *, uid: int, root: int | None) -> str | None:
    """Why the peer on ``sock`` may not have the instance's credentials, or None."""
    pid, peer_uid, _ = credentials(sock)
    if peer_uid != uid:
        return f"uid {peer_uid} is not this agent's ({uid})"
    if root is None:
        return "the instance is not running"
    if not within(pid, root):
        return f"process {pid} is not one of this instance's (pid {root} and its children)"
    return None
