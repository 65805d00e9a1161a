"""Where a project's daemon keeps its socket, pid file, state store, logs and caches."""

from __future__ import annotations

import os

_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes; leave room


def socket_path(state_dir: str) -> str:
    """``STATE/corral.sock``, or a short stand-in under /tmp when that path is too long for a
    Unix socket (deep project dirs); derived from the state dir so no lookup is needed."""
    path = os.path.join(state_dir, "corral.sock")
    if len(path.encode()) <= _MAX_SOCKET_PATH:
        return path
    from corral.sha import sha256

    digest = sha256(os.path.abspath(state_dir).encode()).hexdigest()[:20]
    base = os.path.join("/tmp", f"corral-{os.getuid()}")
    os.makedirs(base, mode=0o700, exist_ok=True)
    return os.path.join(base, f"{digest}.sock")


def pid_file(state_dir: str) -> str:
    return os.path.join(state_dir, "daemon.pid")


def lock_file(state_dir: str) -> str:
    return os.path.join(state_dir, "daemon.lock")


def daemon_log(state_dir: str) -> str:
    return os.path.join(state_dir, "daemon.log")


def store_file(state_dir: str) -> str:
    return os.path.join(state_dir, "state.db")
