"""An agent's image, built from its own directory and cached by content.

With a Containerfile or Dockerfile of its own, the agent's directory is the build context, as
``podman build`` would use it. Without one, a two-stage Containerfile is generated: stage one
makes ``/venv`` from the same requirements.txt / pyproject.toml / packages the ``venv`` level
uses, stage two copies that venv and the agent's files (to ``/app``, the working directory) onto
the same Python base, so ``isolation: venv`` → ``isolation: container`` is a one-word change.

What a build starts FROM may come from a registry, as the agent's ``pull_policy`` says: a
generated build's ``base`` is pulled by the driver first (``pull``), an own Containerfile's
``FROM`` by the engine's build (Podman's ``--pull=POLICY``; Docker's classic builder pulls only
what is missing, and everything with ``always``: it has no ``never``).

No registry and often no network inside a build: the requirements are resolved on the host by
``pip download`` for the image's Python and platform (the host's own pip configuration: index,
local wheel dirs, CA bundle), and the build installs them with ``--no-index``. Pinned
requirements therefore give the venv level's versions exactly. The generated build runs in a
staged context (a copy of the workdir without VCS dirs, venvs, node_modules and caches, plus
the wheels), so run-time files in the workdir (fifos, sockets) never reach the engine.

The tag is ``localhost/corral-<project>-<agent>:<digest>``, the digest covering the
Containerfile, every file of the context and the base image's id: an unchanged agent is not
rebuilt, and ``corral build`` twice is a lookup. A failed build names the failing step. A new
build removes the agent's older images (those no container uses), so changed requirements do
not pile up images on the disk; ``corral down --rmi`` removes the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import platform
import re
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from corral.drivers.container.engine import Engine
from corral.drivers.container.image import BOOTSTRAP_FIX, base_image
from corral.errors import CorralError

_SCHEME = "corral-build/1"
_SKIP_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__",
              ".mypy_cache", ".pytest_cache", ".ruff_cache", ".corral"}
# podman: "[1/2] STEP 3/4: RUN ..." (the stage prefix only in multi-stage builds); docker's
# classic builder: "Step 3/7 : RUN ..."; BuildKit: "#7 [venv 2/3] RUN ..."
_STEP = re.compile(r"^(?:\[\d+/\d+\] )?(?:STEP \d+/\d+: .*|Step \d+/\d+ : .*|#\d+ \[[^\]]+\] .*)$")
_ENTRY = "corral-requirements.txt"  # what the build installs; never a user's file name
_PYTHON_OF_SUITE = {"bookworm": "3.11", "trixie": "3.13", "bullseye": "3.9"}

Progress = Callable[[str], None]


class BuildError(CorralError):
    """An image build failed; the message names the failing step."""


@dataclass(frozen=True, slots=True)
class Recipe:
    """What an agent's image is built from (no engine work done yet)."""

    context: str  # the dir handed to the engine
    file: str | None  # the agent's own Containerfile, or None: generated
    requirements: tuple[str, ...]  # requirement files (absolute), generated builds only
    packages: tuple[str, ...]  # extra specifiers (``venv.packages``, pyproject dependencies)
    pyproject: str | None  # a project dir whose own wheel is installed
    base: str  # base image of a generated build

    def generated(self) -> bool:
        return self.file is None


def recipe(workdir: str, *, build: str | None = None, file: str | None = None,
           base: str | None = None, requirements: str | None = None,
           pyproject: str | None = None, packages: tuple[str, ...] = ()) -> Recipe:
    """Decide how to build: the agent's own file when it has one, else generated from the
    inputs its venv uses (requirements.txt / pyproject.toml found in the workdir by default)."""
    context = os.path.join(workdir, build) if build else workdir
    if file is not None:
        own: str | None = os.path.join(context, file)
        if not os.path.isfile(own):  # type: ignore[arg-type]
            raise CorralError(f"no {file} in {context}", "fix container.file, or drop it to "
                              "generate a Containerfile from the agent's requirements")
    else:
        own = next((p for n in ("Containerfile", "Dockerfile")
                    if os.path.isfile(p := os.path.join(context, n))), None)
    reqs: list[str] = []
    project: str | None = None
    extra = list(packages)
    if own is None:
        if requirements is not None:
            reqs.append(os.path.join(workdir, requirements))
        elif pyproject is None and os.path.isfile(os.path.join(workdir, "requirements.txt")):
            reqs.append(os.path.join(workdir, "requirements.txt"))
        if pyproject is None and not reqs and os.path.isfile(
                os.path.join(workdir, "pyproject.toml")):
            pyproject = "."
        if pyproject is not None:
            path = os.path.join(workdir, pyproject)
            project = os.path.normpath(path if os.path.isdir(path) else os.path.dirname(path))
            extra += _dependencies(os.path.join(project, "pyproject.toml"))
    return Recipe(context, own, tuple(reqs), tuple(extra), project,
                  base or base_image(python=True).tag)


def _dependencies(pyproject: str) -> list[str]:
    try:
        with open(pyproject, "rb") as fh:
            doc = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CorralError(f"cannot read {pyproject}: {exc}", "fix the file") from None
    deps = doc.get("project", {}).get("dependencies", [])
    return [str(d) for d in deps]


def _files(root: str) -> Iterator[str]:
    """Regular files and symlinks under ``root`` that go into a build, sorted, relative."""
    for here, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(names):
            full = os.path.join(here, name)
            if os.path.islink(full) or os.path.isfile(full):
                yield os.path.relpath(full, root)


def digest(r: Recipe, base_id: str = "") -> str:
    """sha256 of everything the image is built from; reads files, runs nothing."""
    h = hashlib.sha256(f"{_SCHEME}\0{r.file is not None}\0{base_id}\0{r.base}\0".encode())
    h.update("\0".join(r.packages).encode() + b"\1")
    for req in r.requirements:
        with open(req, "rb") as fh:
            h.update(fh.read() + b"\1")
    if r.file is not None:
        with open(r.file, "rb") as fh:
            h.update(fh.read() + b"\1")
    for rel in _files(r.context):
        full = os.path.join(r.context, rel)
        h.update(rel.encode() + b"\0")
        if os.path.islink(full):
            h.update(b"L" + os.readlink(full).encode())
        else:
            with open(full, "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def tag_for(project: str, agent: str, key: str) -> str:
    return f"{repository_for(project, agent)}:{key[:16]}"


def repository_for(project: str, agent: str) -> str:
    """Where an agent's built images go: one repository an agent, one tag a content digest."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", f"corral-{project}-{agent}".lower()).strip("-.")
    return f"localhost/{name}"


def repository(tag: str) -> str:
    return tag.rpartition(":")[0]


async def remove_images(engine: Engine, repo: str, *, keep: str = "") -> list[str]:
    """Remove the images of ``repo`` but ``keep``: a new build supersedes the agent's older
    ones, ``corral down --rmi`` all of them. One a container still uses is left (the
    engine refuses, and nothing is forced). Returns the tags removed."""
    got = await engine.run("images", "--format", "{{.Repository}}:{{.Tag}}", repo)
    tags = [t for t in got.out.decode().split() if repository(t) == repo] if got.ok else []
    return [t for t in tags if t != keep and (await engine.run("rmi", t)).ok]


def containerfile(r: Recipe, *, from_context: bool = False) -> str:
    """The generated two-stage Containerfile (stage one: the venv; stage two: the agent).

    ``from_context``: for a build elsewhere (``corral export``), with no staged context: stage
    one installs the requirement files and the project from the agent's own directory (the
    context) through the index the build has, stage two copies that directory to ``/app``.
    Otherwise the staged context's wheels are installed with ``--no-index``."""
    if from_context:
        return _lines(r.base, _from_context(r), "COPY . /app/")
    install = ""
    if r.requirements or r.packages or r.pyproject:
        install = (" && /venv/bin/pip install --no-cache-dir --no-index --find-links /wheels "
                   f"--disable-pip-version-check -r /wheels/{_ENTRY}")
    venv = "python3 -m venv /venv" if install else "python3 -m venv --without-pip /venv"
    return _lines(r.base, ["COPY wheels/ /wheels/", f"RUN {venv}{install}"], "COPY app/ /app/")


def _from_context(r: Recipe) -> list[str]:
    """Stage one's steps for a build from the agent's directory: its requirement files and
    project copied in (paths relative to the context), installed from the index."""
    steps: list[str] = []
    args: list[str] = []
    for n, path in enumerate(r.requirements):
        rel = _inside(r.context, path)
        steps.append(f"COPY {rel} /corral/requirements-{n}.txt")
        args.append(f"-r /corral/requirements-{n}.txt")
    if r.pyproject is not None:
        steps.append(f"COPY {_inside(r.context, r.pyproject)} /corral/project/")
        args.append("/corral/project")
    args += [_quoted(p) for p in r.packages]
    if not args:
        return [*steps, "RUN python3 -m venv --without-pip /venv"]
    return [*steps, "RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir "
            "--disable-pip-version-check " + " ".join(args)]


def _inside(context: str, path: str) -> str:
    rel = os.path.relpath(path, context)
    if rel == os.curdir:
        return "."
    if rel.startswith(os.pardir):
        raise CorralError(f"{path} is outside the build context {context}",
                          "move the requirements into the agent's workdir")
    return rel


def _quoted(spec: str) -> str:
    return "'" + spec.replace("'", "'\\''") + "'"


def _lines(base: str, venv_steps: list[str], copy_app: str) -> str:
    return "\n".join([
        "# generated by corral: the agent's venv, then the agent",
        f"FROM {base} AS venv",
        *venv_steps,
        f"FROM {base}",
        "COPY --from=venv /venv /venv",
        copy_app,
        "WORKDIR /app",
        "ENV VIRTUAL_ENV=/venv PYTHONUNBUFFERED=1 "
        "PATH=/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "",
    ])


async def _run(argv: list[str], progress: Progress | None,
               env: dict[str, str] | None = None) -> tuple[int, list[str], str]:
    """Run, streaming lines; returns the code, the last lines and the last step line."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    tail: list[str] = []
    step = ""
    try:
        async for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            tail = [*tail[-29:], line]
            if _STEP.match(line):
                step = line
            if progress is not None:
                progress(line)
        return await proc.wait(), tail, step
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise


def _python_of(base: str) -> str:
    suite = base.rsplit(":", 1)[-1]
    return _PYTHON_OF_SUITE.get(suite, "3.11")


async def _wheels(r: Recipe, dest: str, progress: Progress | None) -> None:
    """Resolve the requirements on the host for the image's Python and platform."""
    os.makedirs(dest, exist_ok=True)
    lines = [f"-r {os.path.basename(req)}" for req in r.requirements] + list(r.packages)
    for req in r.requirements:  # their -r/-c includes resolve next to them, as on the host
        shutil.copy(req, os.path.join(dest, os.path.basename(req)))
    if r.pyproject is not None:
        code, tail, _ = await _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                                    "-w", dest, r.pyproject], progress)
        if code != 0:
            raise BuildError(f"cannot build the project in {r.pyproject}: {tail[-1:]}",
                             "check its pyproject.toml builds (pip wheel .)")
        lines += [f"/wheels/{n}" for n in sorted(os.listdir(dest)) if n.endswith(".whl")]
    with open(os.path.join(dest, _ENTRY), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    todo = [*(["-r", req] for req in r.requirements), *(["--", p] for p in r.packages)]
    if not todo:
        return
    pyver = _python_of(r.base)
    machine = platform.machine()
    argv = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
            "-d", dest, "--only-binary=:all:", "--implementation", "cp",
            "--python-version", pyver, "--abi", f"cp{pyver.replace('.', '')}", "--abi", "abi3",
            "--abi", "none", "--platform", "any"]
    for glibc in range(17, 41):
        argv += ["--platform", f"manylinux_2_{glibc}_{machine}"]
    argv += ["--platform", f"manylinux2014_{machine}", "--platform", f"manylinux2010_{machine}",
             "--platform", f"manylinux1_{machine}"]
    for req in r.requirements:
        argv += ["-r", req]
    argv += list(r.packages)
    code, tail, _ = await _run(argv, progress)
    if code != 0:
        why = next((ln for ln in reversed(tail) if "ERROR" in ln), tail[-1] if tail else "")
        raise BuildError(f"cannot resolve the requirements for Python {pyver}: {why}",
                         "pin versions that publish wheels, or give the agent a Containerfile")


async def build(engine: Engine, r: Recipe, tag: str, *, staging_root: str,
                progress: Progress | None = None, pull: str = "never") -> str:
    """Build ``r`` as ``tag`` unless the engine already has it. Returns the tag. ``pull``
    is the agent's ``pull_policy`` for what its own Containerfile builds FROM (a generated
    build's base is made present before: the driver pulls it as the policy says)."""
    if await engine.image_exists(tag):
        return tag
    if r.generated() and not await engine.image_exists(r.base):
        raise BuildError(f"base image {r.base} is not in {engine.name}", BOOTSTRAP_FIX
                         if r.base.startswith("localhost/corral-") else
                         f"{engine.name} pull {r.base}, or set container.base")
    os.makedirs(staging_root, exist_ok=True)
    stage = tempfile.mkdtemp(prefix="ctx-", dir=staging_root)
    try:
        if r.generated():
            await asyncio.to_thread(_copy_tree, r.context, os.path.join(stage, "app"))
            await _wheels(r, os.path.join(stage, "wheels"), progress)
            file = os.path.join(stage, "Containerfile")
            with open(file, "w") as fh:
                fh.write(containerfile(r))
            context = stage
        else:
            assert r.file is not None
            file, context = r.file, r.context
        argv = ["build", "-t", tag, "-f", file, "--label", "corral.build=1"]
        env = None
        if engine.name == "podman":  # a generated build's base is present by now
            argv.append(f"--pull={'never' if r.generated() else pull}")
        else:  # docker's classic builder prints "Step N/M"; it pulls only what is missing
            env = {**os.environ, "DOCKER_BUILDKIT": "0"}
            if pull == "always" and not r.generated():
                argv.append("--pull")
        code, tail, step = await _run(engine.argv(*argv, context), progress, env)
        if code != 0:
            why = next((ln for ln in reversed(tail) if not _STEP.match(ln)), f"exit {code}")
            where = f" at {step}" if step else ""
            raise BuildError(f"image build failed{where}: {why}",
                             "fix that step (run `corral build` to see the whole log)")
        for old in await remove_images(engine, repository(tag), keep=tag):
            if progress is not None:
                progress(f"removed {old}: superseded by {tag}")
        return tag
    finally:
        await asyncio.to_thread(shutil.rmtree, stage, True)


def _copy_tree(src: str, dest: str) -> None:
    os.makedirs(dest, exist_ok=True)
    for rel in _files(src):
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        full = os.path.join(src, rel)
        if os.path.islink(full):
            os.symlink(os.readlink(full), target)
        else:
            shutil.copy2(full, target)
