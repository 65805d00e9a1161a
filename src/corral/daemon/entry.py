"""The supervisor daemon: one per project state dir, serving the API on a Unix socket.

Started by ``corral up`` (``python -m corral.daemon --state-dir DIR``). It holds an exclusive
lock on ``daemon.lock`` for its lifetime, so two daemons never manage one fleet. SIGTERM/SIGINT
stop the fleet and exit; a SIGKILL leaves the agents running for the next daemon to re-adopt.

This entry point stays import-light: the daemon lives as long as the fleet, and every module it
imports stays resident (benchmark S2 holds it to supervisord's memory). So no argparse for one
option, and asyncio is imported without ssl (``_asyncio_without_ssl``).
"""

from __future__ import annotations

import contextlib
import os
import sys

USAGE = "usage: python -m corral.daemon --state-dir DIR"


def _state_dir(argv: list[str]) -> str:
    """The one option the CLI passes; anything else is a usage error (exit 2, as argparse)."""
    if argv in (["-h"], ["--help"]):
        print(USAGE)
        raise SystemExit(0)
    if len(argv) == 2 and argv[0] == "--state-dir" and argv[1]:
        return argv[1]
    if len(argv) == 1 and argv[0].startswith("--state-dir=") and argv[0] != "--state-dir=":
        return argv[0].partition("=")[2]
    print(f"{USAGE}\ncorral-daemon: error: unexpected arguments {argv!r}", file=sys.stderr)
    raise SystemExit(2)


def _asyncio_without_ssl() -> None:
    """asyncio imports ssl (~4 MB resident: OpenSSL and its tables) in case a connection asks
    for TLS; the daemon's connections never do (a Unix socket; plain-HTTP metrics). Importing
    asyncio while ``ssl`` is marked missing leaves asyncio's own TLS support off in this
    process; the mark is removed right after, so a module that really needs ssl imports it as
    usual (an https probe, which does its TLS itself in ``health.py``; prometheus_client at
    the first scrape)."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return  # already in this process (``corral daemon`` from the CLI, tests): no saving
    sys.modules["ssl"] = None  # type: ignore[assignment]  # documented: import raises
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]


def _lock(state_dir: str) -> int:
    import fcntl

    from corral import paths

    fd = os.open(paths.lock_file(state_dir), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("corral: another daemon already manages this state dir", file=sys.stderr)
        raise SystemExit(3) from None
    return fd


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    state_dir = os.path.abspath(_state_dir(sys.argv[1:] if argv is None else argv))
    from corral import paths

    paths.private_state_dir(state_dir)
    lock = _lock(state_dir)
    _raise_fd_limit()
    _asyncio_without_ssl()
    import asyncio

    from corral import paths
    from corral.api.listener import SettingError, settings
    from corral.daemon import log as daemonlog
    from corral.daemon.serve import keep_heap, serve
    from corral.drivers.host import proctree

    try:
        listening = settings(os.environ)
    except SettingError as exc:
        print(f"corral daemon: {exc}", file=sys.stderr)
        return 2
    daemonlog.install(paths.daemon_log(state_dir))

    proctree.become_subreaper()
    keep_heap()
    if sys.version_info < (3, 12):
        asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    try:
        return asyncio.run(serve(state_dir, listening))
    finally:
        os.close(lock)
