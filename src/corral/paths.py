"""Where a project's daemon keeps its socket, pid file, state store, logs and caches:
``StateLayout`` is the one spelling of every path under the state dir (the functions below
are its shorthands for callers holding only the dir)."""

from __future__ import annotations

import os

_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes; leave room


def socket_path(state_dir: str) -> str:
    """``STATE/corral.sock``, or a short stand-in under /tmp when that path is too long for a
    Unix socket (deep project dirs); derived from the state dir so no lookup is needed."""
    path = os.path.join(state_dir, "corral.sock")
    if len(path.encode()) <= _MAX_SOCKET_PATH:
        return path
    from corral.lean.sha import sha256

    digest = sha256(os.path.abspath(state_dir).encode()).hexdigest()[:20]
    return os.path.join(private_tmp(), f"{digest}.sock")


def private_tmp() -> str:
    """``/tmp/corral-UID``, 0700 and ours. Anyone may create it first in /tmp: a link or a
    dir of someone else's would hand them the socket, so it is checked without following
    links, refused if it is not ours, and made 0700 again if an older corral left it open."""
    from corral.errors import CorralError
    from corral.ownership import privdir

    base = os.path.join("/tmp", f"corral-{os.geteuid()}")
    try:
        fd = privdir.open_dir(None, base, mode=0o700, uid=os.geteuid(), gid=os.getegid(),
                              shown=base)
    except privdir.UnsafeDir as exc:
        raise CorralError(str(exc)) from None
    os.close(fd)
    return base


def private_state_dir(state_dir: str) -> None:
    """The state dir (socket, store, logs), made 0700: a 0755 one left by an older version
    let other users list and read the fleet's logs."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    st = os.stat(state_dir)
    # group x alone is the mask of the ACL that lets agents with a user: pass (identity.admit)
    if st.st_uid == os.geteuid() and st.st_mode & 0o067:
        os.chmod(state_dir, 0o700)


def pid_file(state_dir: str) -> str:
    return os.path.join(state_dir, "daemon.pid")


def lock_file(state_dir: str) -> str:
    return os.path.join(state_dir, "daemon.lock")


def daemon_log(state_dir: str) -> str:
    return os.path.join(state_dir, "daemon.log")


def store_file(state_dir: str) -> str:
    return os.path.join(state_dir, "state.db")


def dashboard_token(state_dir: str) -> str:
    """The web dashboard's token (mode 0600): its bearer drives the fleet over HTTP."""
    return os.path.join(state_dir, "dashboard.token")


class StateLayout:
    """The state dir's layout: ``run/INSTANCE`` (pipes, cursors: gone with the instance),
    ``data/AGENT`` (``$CORRAL_STATE_DIR``, kept across restarts), ``cache`` (venvs, node
    trees, shared by the fleet), ``logs``, and the daemon's own files."""

    __slots__ = ("root",)

    def __init__(self, root: str) -> None:
        self.root = root

    def run(self, instance: str) -> str:
        return os.path.join(self.root, "run", instance)

    def data(self, agent: str | None = None) -> str:
        """An agent's data dir, or with no agent the dir that holds them all."""
        top = os.path.join(self.root, "data")
        return top if agent is None else os.path.join(top, agent)

    @property
    def run_root(self) -> str:
        return os.path.join(self.root, "run")

    @property
    def cache(self) -> str:
        return os.path.join(self.root, "cache")

    @property
    def logs(self) -> str:
        return os.path.join(self.root, "logs")

    @property
    def socket(self) -> str:
        return socket_path(self.root)

    @property
    def store(self) -> str:
        return store_file(self.root)
