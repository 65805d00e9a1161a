"""Per-agent virtual environments built with uv, cached by a digest of their inputs.

A venv lives at ``<cache_dir>/venvs/<digest[:16]>``, complete once it holds ``MARKER``. It is
built in a staging dir next to it and renamed into place on success only (so a failed or
cancelled build leaves nothing), under an asyncio lock (this process) plus an ``fcntl.flock``
(other processes: replicas, the CLI) per digest. ``uv venv --relocatable`` keeps entry-point
scripts working after the rename. The digest covers the requirements file and its ``-r``/``-c``
includes, pyproject.toml's *content*, the packages and the interpreter; not the project's source
tree (slow and fragile to hash), so edit pyproject.toml (e.g. its version) to rebuild after
changing a project's code. Local paths inside requirements and uv's environment settings
(``UV_INDEX_URL``...) are not covered either.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import weakref
from asyncio.subprocess import DEVNULL, PIPE, STDOUT
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from corral.drivers.base import Output
from corral.drivers.host.options import VenvOptions
from corral.errors import DriverError
from corral.lean.sha import sha256

MARKER = ".corral-venv.json"
_SCHEME = "corral-venv/1"  # bump to invalidate every cached venv when the layout changes
_KEY_LEN = 16
_LABEL = re.compile(r"^(error|cause|warning|hint|help):\s*")
_INCLUDE = re.compile(r"^\s*(?:-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+|(?=\S))(\S+)")

# One dict of locks per event loop: an asyncio.Lock must not be shared between loops.
_locks = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]]()


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        fix = "fix the path in the agent's venv block (relative to the agent's workdir)"
        raise DriverError(f"cannot read {what} {path}: {exc.strerror or exc}", fix) from None


def requirement_files(path: str, seen: set[str]) -> Iterable[tuple[str, bytes]]:
    """``path`` and every file it includes with -r/-c, each once (include cycles are fine)."""
    real = os.path.realpath(path)
    if real in seen:
        return
    seen.add(real)
    content = _read(path, "requirements file")
    yield os.path.basename(path), content
    base = os.path.dirname(path)
    for match in map(_INCLUDE.match, content.decode("utf-8", "replace").splitlines()):
        if match:
            yield from requirement_files(os.path.join(base, match.group(1)), seen)


def pyproject_path(options: VenvOptions, workdir: str) -> str | None:
    if options.pyproject is None:
        return None
    path = os.path.join(workdir, options.pyproject)
    return os.path.join(path, "pyproject.toml") if os.path.isdir(path) else path


def venv_digest(options: VenvOptions, workdir: str, *, python: str | None = None) -> str:
    """sha256 (hex) of what the venv is built from: reads files, runs nothing. Independent of
    where ``workdir`` is. ``python``: the interpreter used when the manifest names none."""
    parts: dict[str, object] = {"scheme": _SCHEME}
    if options.requirements is not None:
        files = requirement_files(os.path.join(workdir, options.requirements), set())
        parts["requirements"] = [[n, sha256(c).hexdigest()] for n, c in files]
    pyproject = pyproject_path(options, workdir)
    if pyproject is not None:
        parts["pyproject"] = sha256(_read(pyproject, "pyproject file")).hexdigest()
    parts["packages"] = sorted(options.packages)
    parts["python"] = options.python
    parts["default_python"] = python
    parts["interpreter"] = [sys.implementation.cache_tag, sys.version, sys.base_prefix]
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return sha256(blob).hexdigest()


def venv_python(venv_dir: str) -> str:
    return os.path.join(venv_dir, "bin", "python")


def find_uv() -> str:
    """The uv binary: the ``uv`` package next to this interpreter, else ``uv`` on PATH."""
    with contextlib.suppress(ImportError, FileNotFoundError):
        import uv

        return str(uv.find_uv_bin())
    if found := shutil.which("uv"):
        return found
    raise DriverError("uv is not installed (venv isolation builds with it)", "pip install uv")


def _meaningful(lines: list[str]) -> str:
    """uv's last message, with its wrapped lines (indented deeper, no label) joined."""
    entries: list[tuple[int, str]] = []
    for line in lines:
        depth, text = len(line) - len(line.lstrip()), line.strip()
        if entries and depth > entries[-1][0] and not _LABEL.match(text):
            entries[-1] = (entries[-1][0], f"{entries[-1][1]} {text}")
        else:
            entries.append((depth, text))
    useful = [text for _, text in entries if not text.startswith(("hint:", "help:"))]
    return _LABEL.sub("", useful[-1]) if useful else "no output"


async def run_streamed(argv: list[str], cwd: str, progress: Output | None) -> tuple[int, bytes]:
    """Run ``argv`` streaming its merged output to ``progress``; return (code, output tail).
    Cancelling kills uv's whole process group before returning the cancellation."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, stdin=DEVNULL, stdout=PIPE, stderr=STDOUT, start_new_session=True
        )
    except OSError as exc:  # uv vanished, or the workdir does not exist
        fix = "check that the agent's workdir exists and uv is installed (pip install uv)"
        raise DriverError(f"cannot run {argv[0]} in {cwd}: {exc}", fix) from None
    assert proc.stdout is not None
    tail = b""
    try:
        while chunk := await proc.stdout.read(65536):
            if progress is not None:
                progress.feed("stderr", chunk)
            tail = (tail + chunk)[-8192:]
        return await proc.wait(), tail
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.asynccontextmanager
async def build_lock(venvs: str, key: str) -> AsyncIterator[None]:
    """The asyncio lock, then the flock, polled: a thread blocked in flock can't be cancelled."""
    locks = _locks.setdefault(asyncio.get_running_loop(), {})
    async with locks.setdefault(key, asyncio.Lock()):
        fd = os.open(os.path.join(venvs, ".locks", key + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            delay = 0.05
            while not _try_flock(fd):
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.25)
            yield
        finally:
            os.close(fd)  # releases the flock


def _complete(venv_dir: str, digest: str) -> bool:
    """Marked complete for this digest, and its base interpreter is still there."""
    try:
        with open(os.path.join(venv_dir, MARKER), encoding="utf-8") as fh:
            ok = json.load(fh).get("digest") == digest
    except (OSError, ValueError, AttributeError):
        return False
    return bool(ok) and os.path.exists(venv_python(venv_dir))


async def remove_tree(path: str) -> None:
    await asyncio.to_thread(shutil.rmtree, path, True)  # ignore_errors: a missing path is fine


async def ensure_venv(
    options: VenvOptions,
    workdir: str,
    cache_dir: str,
    *,
    progress: Output | None = None,
    python: str | None = None,
) -> str:
    """The directory of a complete venv for ``options``, building it on a cache miss.

    The interpreter is the manifest's ``python`` (a version such as "3.11"), else ``python``,
    else the one corral runs on. The build's output is fed to ``progress`` ("stderr") as it
    comes. Raises DriverError with the tail of uv's output if the build fails."""
    digest = venv_digest(options, workdir, python=python)

    async def build(built: str) -> None:
        interpreter = options.python or python or sys.executable
        record = await _build(options, workdir, built, interpreter, progress)
        with open(os.path.join(built, MARKER), "w", encoding="utf-8") as fh:
            json.dump({"digest": digest, **record}, fh)

    return await build_cached(os.path.join(cache_dir, "venvs"), digest,
                              lambda target: _complete(target, digest), build)


async def build_cached(root: str, digest: str, complete: Callable[[str], bool],
                       build: Callable[[str], Awaitable[None]]) -> str:
    """``root/<digest[:16]>``, built by ``build(dir)`` on a cache miss: in a staging dir next to
    it, renamed into place on success only (a failed or cancelled build leaves nothing), under
    the asyncio lock and the flock of ``build_lock``. ``complete(dir)``: it is there, whole.
    Venvs and Node trees share this; each writes its own marker from ``build``."""
    key = digest[:_KEY_LEN]
    target = os.path.join(root, key)
    if complete(target):
        return target
    os.makedirs(os.path.join(root, ".locks"), exist_ok=True)
    async with build_lock(root, key):
        if complete(target):
            return target  # someone else built it while we waited
        for name in os.listdir(root):  # leftovers of builds that crashed holding this lock
            if name.startswith(f".tmp-{key}-"):
                await remove_tree(os.path.join(root, name))
        await remove_tree(target)  # incomplete or broken
        staging = tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root)
        try:
            built = os.path.join(staging, "tree")
            await build(built)
            os.rename(built, target)
        finally:
            await remove_tree(staging)
    return target


async def _build(
    options: VenvOptions, workdir: str, venv_dir: str, interpreter: str, progress: Output | None
) -> dict[str, object]:
    uv = find_uv()
    named = [w for w in (options.requirements, options.pyproject) if w is not None]
    packages = ["packages " + " ".join(options.packages)] if options.packages else []
    what = ", ".join(named + packages) or f"python {options.python or 'default'}"
    if progress is not None:
        progress.feed("stderr", f"corral: building a venv for {what}\n".encode())
    started = time.monotonic()
    create = [uv, "venv", "--quiet", "--color", "never", "--relocatable", "--python"]
    steps = [([*create, interpreter, venv_dir], f"check the venv's python ({interpreter})")]
    install: list[str] = []
    if options.requirements is not None:
        install += ["-r", os.path.abspath(os.path.join(workdir, options.requirements))]
    pyproject = pyproject_path(options, workdir)
    if pyproject is not None:
        install.append(os.path.dirname(os.path.abspath(pyproject)))
    install += options.packages
    if install:
        argv = [uv, "pip", "install", "--color", "never", "--python", venv_python(venv_dir)]
        steps.append((argv + install, "fix the requirements"))
    for argv, fix in steps:
        code, tail = await run_streamed(argv, workdir, progress)
        if code != 0:
            lines = [ln for ln in tail.decode("utf-8", "replace").splitlines() if ln.strip()]
            said = "\n  ".join(lines[-10:]) or f"nothing; exit code {code}"
            problem = f"venv build failed for {what}: {_meaningful(lines)}"
            raise DriverError(problem, f"{fix} (uv said:\n  {said})")
    seconds = round(time.monotonic() - started, 3)
    return {"what": what, "python": interpreter, "seconds": seconds}


def prune_venvs(cache_dir: str, keep: set[str]) -> list[str]:
    """Remove cached venvs whose digest (full, or its 16-char key) is not in ``keep``, and
    leftovers of crashed builds; skip any whose build lock is held. Returns removed paths.
    Blocking (it deletes trees): call it through ``asyncio.to_thread`` in async code."""
    venvs = os.path.join(cache_dir, "venvs")
    keys = {k[:_KEY_LEN] for k in keep}
    if not os.path.isdir(venvs):
        return []
    removed: list[str] = []
    lock_dir = os.path.join(venvs, ".locks")
    os.makedirs(lock_dir, exist_ok=True)
    for name in sorted(os.listdir(venvs)):
        path = os.path.join(venvs, name)
        staging = name.startswith(".tmp-")
        key = name.split("-")[1] if staging else name
        if not staging and (name.startswith(".") or key in keys):
            continue
        fd = os.open(os.path.join(lock_dir, key + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_flock(fd):
                continue  # being built right now
            # Rename first so nobody sees a venv with its marker but half its files; if we
            # crash before the rmtree, the name marks it as a leftover to remove later.
            doomed = tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=venvs)
            os.rename(path, os.path.join(doomed, name))
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(path)  # the lock file stays: unlinking a lock file races
        finally:
            os.close(fd)
    return removed
