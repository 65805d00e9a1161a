"""A non-root user driving rootless Podman, for the tests that run corral as that user.

The session (run as root) makes the user when missing (``useradd -m``: Debian's adds its
subordinate uid/gid ranges), copies root's base image into the user's storage (``podman save |
podman load``, skipped when the user already holds the same image id) and runs corral there
with Debian's own ``/usr/bin/python3.11`` (the pyenv interpreter under ``/root`` is closed to
other users), ``PYTHONPATH`` naming the checkout's ``src`` and the venv's site-packages (whose
compiled wheels are CPython 3.11's ABI). The environment is what ``su`` gives: no
``XDG_RUNTIME_DIR``, which corral must do without.

Every process of the user's that appears during the session (the daemons, their Podman
services, conmons, Podman's own pause process) is killed by PID at the end; the user stays.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.drivers.container.engine import Engine
from tests.support.engines import IMAGE

USER = os.environ.get("CORRAL_TEST_ROOTLESS_USER", "corralu")
PYTHON = "/usr/bin/python3.11"
BASE = IMAGE  # what the engine fixture bootstrapped
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str
    pythonpath: str

    def env(self, **extra: str) -> dict[str, str]:
        """A login's environment as ``su`` makes it: no ``XDG_RUNTIME_DIR``."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name, "SHELL": "/bin/sh",
                "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                "PYTHONPATH": self.pythonpath, "PYTHONDONTWRITEBYTECODE": "1", **extra}

    def run(self, argv: list[str], *, cwd: str | None = None, timeout: float = 120,
            stdin: bytes | None = None, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(argv, user=self.uid, group=self.gid, extra_groups=[],
                              cwd=cwd or self.home, env=self.env(**(env or {})),
                              input=stdin, capture_output=True, timeout=timeout,
                              stdin=None if stdin is not None else subprocess.DEVNULL)

    def podman(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        return self.run(["podman", *args], timeout=timeout)

    def live_pids(self) -> set[int]:
        """The user's processes that are not zombies (this host's init reaps slowly)."""
        found = set()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if os.stat(f"/proc/{name}").st_uid != self.uid:
                    continue
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            if stat.rsplit(b")", 1)[1].split()[0] != b"Z":
                found.add(int(name))
        return found

    def project_dir(self) -> Path:
        """A dir the user owns and can reach (pytest's tmp under /tmp/pytest-of-root is
        root's); the caller removes it."""
        path = Path(tempfile.mkdtemp(prefix="corral-rootless-", dir="/tmp"))
        os.chown(path, self.uid, self.gid)
        path.chmod(0o755)
        return path


def _why_not(user: User) -> str:
    """'' when the user can run corral and rootless Podman, else why not."""
    got = user.run([PYTHON, "-c", "import corral, pydantic_core, yaml, h11, prometheus_client"])
    if got.returncode != 0:
        return (f"{PYTHON} as {user.name} cannot import corral and the venv's packages: "
                f"{got.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    got = user.podman("info", "--format", "{{.Host.Security.Rootless}}", timeout=60)
    if got.returncode != 0 or got.stdout.strip() != b"true":
        return (f"podman as {user.name} is not rootless Podman here: "
                f"{(got.stdout + got.stderr).decode(errors='replace').strip()[-300:]}")
    return ""


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        pass
    got = subprocess.run(["useradd", "-m", "-s", "/bin/sh", USER], capture_output=True,
                         text=True)
    if got.returncode != 0:
        pytest.skip(f"cannot create the test user {USER}: {got.stderr.strip()}")
    entry = pwd.getpwnam(USER)
    for table, flag in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        with open(table, encoding="utf-8") as fh:
            if any(line.startswith(f"{USER}:") for line in fh):
                continue
        start = 100000 + (entry.pw_uid % 1000) * 65536  # useradd adds them where configured
        subprocess.run(["usermod", flag, f"{start}-{start + 65535}", USER], check=True)
    return entry


def _image_id(run: list[str] | subprocess.CompletedProcess[bytes]) -> str:
    got = run if isinstance(run, subprocess.CompletedProcess) else subprocess.run(
        run, capture_output=True)
    return got.stdout.decode().strip() if got.returncode == 0 else ""


def _load_base(user: User, engine: Engine) -> None:
    """Root's base image into the user's storage, unless it holds that very image."""
    want = _image_id(engine.argv("image", "inspect", "--format", "{{.Id}}", BASE))
    if not want:
        pytest.skip(f"root's Podman has no {BASE} (corral image bootstrap makes it)")
    if _image_id(user.podman("image", "inspect", "--format", "{{.Id}}", BASE)) == want:
        return
    saved = subprocess.run(engine.argv("save", BASE), capture_output=True, timeout=300)
    if saved.returncode != 0:
        pytest.skip(f"podman save {BASE} failed: {saved.stderr.decode().strip()[-200:]}")
    got = user.run(["podman", "load"], stdin=saved.stdout, timeout=300)
    if got.returncode != 0:
        pytest.skip(f"podman load as {user.name} failed: {got.stderr.decode().strip()[-200:]}")


@contextlib.contextmanager
def rootless_user(engine: Engine) -> Iterator[User]:
    if os.geteuid() != 0:
        pytest.skip("the rootless tests run as root: they make the test user and act as it")
    for tool in ("newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing (apt-get install uidmap; "
                        "scripts/install.sh --test installs it)")
    if not os.access(PYTHON, os.X_OK):
        pytest.skip(f"{PYTHON} is missing: the test user needs an interpreter it may run")
    if sys.version_info[:2] != (3, 11):
        pytest.skip(f"the venv is Python {sys.version_info[0]}.{sys.version_info[1]}: "
                    f"its compiled packages do not load in {PYTHON}")
    entry = _ensure_user()
    site = sysconfig.get_paths()["purelib"]
    user = User(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir,
                f"{REPO / 'src'}:{site}")
    before = user.live_pids()
    try:
        why = _why_not(user)
        if why:
            pytest.skip(why)
        _load_base(user, engine)
        yield user
    finally:
        for pid in user.live_pids() - before:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
