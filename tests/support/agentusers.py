"""Real unprivileged users for agents with ``user:``, made by the session when missing.

``useradd --system`` (no home, no login shell), as support/rootless.py makes its user; each user
this session made is removed at its end (``userdel``), after its leftover processes are
killed by PID. A user that already existed is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

NAMES = ("corral-agent-a", "corral-agent-b")


def _pids_of(uid: int) -> set[int]:
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{name}").st_uid == uid:
                    found.add(int(name))
    return found


@contextlib.contextmanager
def agent_users() -> Iterator[tuple[pwd.struct_passwd, ...]]:
    if os.geteuid() != 0:
        pytest.skip("agents with user: need corral to run as root (these tests make users)")
    if shutil.which("useradd") is None or shutil.which("setpriv") is None:
        pytest.skip("useradd and setpriv are needed (apt-get install passwd util-linux)")
    made: list[str] = []
    entries = []
    try:
        for name in NAMES:
            try:
                entries.append(pwd.getpwnam(name))
                continue
            except KeyError:
                pass
            got = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                                  "/usr/sbin/nologin", name], capture_output=True, text=True)
            if got.returncode != 0:
                pytest.skip(f"cannot create the test user {name}: {got.stderr.strip()}")
            made.append(name)
            entries.append(pwd.getpwnam(name))
        yield tuple(entries)
    finally:
        for name in made:
            uid = pwd.getpwnam(name).pw_uid
            for pid in _pids_of(uid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["userdel", name], capture_output=True)


def open_dir(prefix: str) -> Path:
    """A project dir other users can reach (pytest's tmp under /tmp/pytest-of-root is 0700);
    the caller removes it."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path
