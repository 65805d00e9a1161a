"""Per-agent ``node_modules`` built with ``npm ci``, cached by a digest of their inputs.

The Node twin of ``venvbuild``: the agent's package.json and lock file are copied into a
staging dir under ``<cache_dir>/node/``, ``npm ci`` installs exactly the locked tree there, and
the dir is renamed to ``<digest[:16]>`` on success only (same locks as venvs: an asyncio lock
plus an flock per digest). The digest covers package.json, the lock file and the Node version
(native modules are built for one ABI). The agent's workdir gets a ``node_modules`` symlink to
the cached tree, so both ``require`` and ES ``import`` resolve it; a real ``node_modules`` dir
the user made is never replaced. Local ``file:`` dependencies and workspaces, which need the
project's tree, are not supported: install those agents with a venv-less ``process`` level.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from functools import cache

from corral.drivers.base import Output
from corral.drivers.host.python_env import build_cached, run_streamed
from corral.errors import DriverError

MARKER = ".corral-node.json"
_SCHEME = "corral-node/1"
LOCK_FILES = ("package-lock.json", "npm-shrinkwrap.json")


@cache
def node_version(node: str = "node") -> str:
    try:
        return subprocess.run([node, "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def find_npm() -> str:
    found = shutil.which("npm")
    if found is None:
        raise DriverError("npm is not installed (node: agents build node_modules with npm ci)",
                          "apt-get install nodejs npm (or install Node.js from nodejs.org)")
    return found


def lock_file(package_dir: str) -> str | None:
    for name in LOCK_FILES:
        path = os.path.join(package_dir, name)
        if os.path.isfile(path):
            return path
    return None


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise DriverError(f"cannot read {path}: {exc.strerror or exc}",
                          "fix the agent's node block (paths are relative to its workdir)"
                          ) from None


def node_digest(package_dir: str) -> str:
    from corral.lean.sha import sha256

    lock = lock_file(package_dir)
    if lock is None:
        raise DriverError(f"{package_dir} has no package-lock.json: npm ci needs one",
                          f"run 'npm install --package-lock-only' in {package_dir} and keep "
                          "the lock file next to package.json")
    parts = {"scheme": _SCHEME, "node": node_version(),
             "package": sha256(_read(os.path.join(package_dir, "package.json"))).hexdigest(),
             "lock": [os.path.basename(lock), sha256(_read(lock)).hexdigest()]}
    return sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _complete(built: str, digest: str) -> bool:
    try:
        with open(os.path.join(built, MARKER), encoding="utf-8") as fh:
            return bool(json.load(fh).get("digest") == digest)
    except (OSError, ValueError, AttributeError):
        return False


async def ensure_node_modules(package_dir: str, cache_dir: str, *,
                              progress: Output | None = None) -> str:
    """The cached dir whose ``node_modules`` holds the locked tree; built on a cache miss with
    npm's output fed to ``progress``. Raises DriverError with npm's tail when it fails."""
    digest = node_digest(package_dir)

    async def build(built: str) -> None:
        os.mkdir(built)
        lock = lock_file(package_dir)
        assert lock is not None
        for path in (os.path.join(package_dir, "package.json"), lock):
            shutil.copyfile(path, os.path.join(built, os.path.basename(path)))
        if progress is not None:
            progress.feed("stderr", f"corral: npm ci for {package_dir}\n".encode())
        started = time.monotonic()
        argv = [find_npm(), "ci", "--no-audit", "--no-fund", "--loglevel", "warn"]
        code, tail = await run_streamed(argv, built, progress)
        if code != 0:
            lines = [ln for ln in tail.decode("utf-8", "replace").splitlines() if ln.strip()]
            said = "\n  ".join(lines[-10:]) or f"nothing; exit code {code}"
            raise DriverError(f"npm ci failed for {package_dir}: "
                              f"{lines[-1] if lines else code}",
                              f"fix package.json or its lock file (npm said:\n  {said})")
        with open(os.path.join(built, MARKER), "w", encoding="utf-8") as fh:
            json.dump({"digest": digest, "seconds": round(time.monotonic() - started, 3),
                       "node": node_version()}, fh)

    return await build_cached(os.path.join(cache_dir, "node"), digest,
                              lambda target: _complete(target, digest), build)


def link_node_modules(workdir: str, built: str, root: str = "") -> None:
    """``workdir/node_modules`` → the cached tree; a stale link is replaced, a real dir is
    the user's and stays (then the agent uses it, and we say so). ``root``: the dir the
    workdir must not lead out of (the project's): an agent may have put a link on the way
    between two runs, and corral writes here on the host."""
    from corral.drivers.host import beneath

    try:
        fd = beneath.open_beneath(root or workdir, workdir)
    except beneath.Escape as exc:
        raise DriverError(f"{exc}: refused (node_modules is linked there)",
                          "replace the link with the real directory") from None
    try:
        want = os.path.join(built, "node_modules")
        try:
            if os.readlink("node_modules", dir_fd=fd) == want:
                return
            os.unlink("node_modules", dir_fd=fd)  # a stale link of ours
        except FileNotFoundError:
            pass
        except OSError:  # not a link: a real node_modules
            raise DriverError(f"{os.path.join(workdir, 'node_modules')} exists and is not "
                              "corral's: it would shadow the locked tree",
                              "remove it (corral links the cached node_modules there)"
                              ) from None
        tmp = f"node_modules.corral-{os.getpid()}"
        os.symlink(want, tmp, dir_fd=fd)
        os.replace(tmp, "node_modules", src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)
