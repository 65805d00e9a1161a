"""Per-agent venvs built with the real uv from real PyPI packages.

Tests that build venvs need uv and the package index; without them they skip, naming why.
The digest and environment tests need neither.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from corral.drivers.host import python_env as venvbuild
from corral.drivers.host.activation import venv_env
from corral.drivers.host.options import VenvOptions
from corral.drivers.host.python_env import (
    MARKER,
    ensure_venv,
    prune_venvs,
    venv_digest,
    venv_python,
)
from corral.errors import DriverError

T = TypeVar("T")
HEADER = b"corral: building a venv"
MISSING = "corral-no-such-package-xyz"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Progress:
    """An Output that records what it was fed."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes]] = []
        self.uv_spoke = asyncio.Event()  # uv's own output (not corral's header) arrived

    def feed(self, stream: str, data: bytes) -> None:
        self.chunks.append((stream, data))
        if not data.startswith(HEADER):
            self.uv_spoke.set()

    def eof(self, stream: str) -> None:
        raise AssertionError("a venv build must not close the instance's output")

    @property
    def text(self) -> bytes:
        return b"".join(data for _, data in self.chunks)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def in_venv(venv: str, code: str) -> str:
    env = venv_env(venv, dict(os.environ))
    argv = [venv_python(venv), "-c", code]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd="/")
    return done.stdout.strip()


def leftovers(cache: Path) -> list[str]:
    return sorted(n for n in os.listdir(cache / "venvs") if n != ".locks")


@pytest.fixture(scope="module")
def online() -> None:
    """Skip (with uv's own words) unless uv runs and the index answers."""
    try:
        uv = venvbuild.find_uv()
    except DriverError as exc:
        pytest.skip(f"uv is not available: {exc}")
    argv = [uv, "pip", "compile", "--no-header", "--color", "never", "--python", sys.executable]
    try:
        done = subprocess.run(
            [*argv, "-"], input="six==1.16.0\n", capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"uv could not reach the package index: {exc}")
    if done.returncode != 0:
        pytest.skip(f"uv could not reach the package index: {done.stderr.strip()[-300:]}")


# --- digest (no network) ------------------------------------------------------------------


def test_digest_follows_included_requirement_files(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", "-r base.txt\n--constraint=pins/c.txt\nsix\n")
    write(tmp_path / "base.txt", "-r requirements.txt\nattrs\n")  # a cycle is harmless
    write(tmp_path / "pins/c.txt", "--requirement more.txt\n")  # relative to c.txt
    write(tmp_path / "pins/more.txt", "idna\n")
    options = VenvOptions(requirements="requirements.txt")
    first = venv_digest(options, str(tmp_path))
    assert len(first) == 64 and first == venv_digest(options, str(tmp_path))
    seen = {first}
    for name in ("base.txt", "pins/c.txt", "pins/more.txt", "requirements.txt"):
        with (tmp_path / name).open("a") as fh:
            fh.write("# changed\n")
        seen.add(venv_digest(options, str(tmp_path)))
    assert len(seen) == 5


def test_digest_is_independent_of_where_the_workdir_is(tmp_path: Path) -> None:
    for where in ("a", "b"):
        write(tmp_path / where / "req.txt", "six==1.16.0\n")
        write(tmp_path / where / "proj/pyproject.toml", "[project]\nname='x'\n")
    options = VenvOptions(requirements="req.txt", pyproject="proj/pyproject.toml")
    assert venv_digest(options, str(tmp_path / "a")) == venv_digest(options, str(tmp_path / "b"))


def test_digest_covers_packages_python_and_pyproject_content_only(tmp_path: Path) -> None:
    project = write(tmp_path / "pyproject.toml", "[project]\nname='x'\nversion='1'\n")
    base = VenvOptions(pyproject="pyproject.toml", packages=["six", "idna"])
    digest = venv_digest(base, str(tmp_path))
    # Packages are one resolution: their order does not matter.
    reordered = replace(base, packages=["idna", "six"])
    assert venv_digest(reordered, str(tmp_path)) == digest
    # pyproject naming the directory is the same project.
    by_dir = VenvOptions(pyproject=".", packages=["six", "idna"])
    assert venv_digest(by_dir, str(tmp_path)) == digest
    # The project's other files are deliberately not hashed (documented).
    write(tmp_path / "x/__init__.py", "VALUE = 2\n")
    assert venv_digest(base, str(tmp_path)) == digest
    changes = [
        replace(base, packages=["six"]),
        replace(base, python="3.12"),
    ]
    assert all(venv_digest(o, str(tmp_path)) != digest for o in changes)
    assert venv_digest(base, str(tmp_path), python="/usr/bin/python3") != digest
    project.write_text("[project]\nname='x'\nversion='2'\n")
    assert venv_digest(base, str(tmp_path)) != digest


def test_digest_of_a_missing_file_is_a_driver_error(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match=r"requirements file .*nope\.txt"):
        venv_digest(VenvOptions(requirements="nope.txt"), str(tmp_path))
    write(tmp_path / "r.txt", "-r gone.txt\n")
    with pytest.raises(DriverError, match=r"gone\.txt"):
        venv_digest(VenvOptions(requirements="r.txt"), str(tmp_path))


def test_venv_env_activates_the_venv() -> None:
    base = {"PATH": "/usr/bin:/venv/bin:/bin", "PYTHONHOME": "/elsewhere", "KEEP": "1"}
    env = venv_env("/venv", base)
    assert env["PATH"] == "/venv/bin:/usr/bin:/bin"
    assert env["VIRTUAL_ENV"] == "/venv" and env["KEEP"] == "1"
    assert "PYTHONHOME" not in env and base["PYTHONHOME"] == "/elsewhere"
    assert venv_env("/v", {})["PATH"].startswith("/v/bin" + os.pathsep)
    assert venv_python("/venv") == "/venv/bin/python"


def test_missing_uv_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uv

    def gone() -> str:
        raise FileNotFoundError("no uv")

    monkeypatch.setattr(uv, "find_uv_bin", gone)
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)
    with pytest.raises(DriverError) as caught:
        run(ensure_venv(VenvOptions(packages=["six"]), str(tmp_path), str(tmp_path / "c")))
    assert caught.value.fix == "pip install uv"
    assert leftovers(tmp_path / "c") == []


def test_missing_workdir_is_a_driver_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-workdir")
    with pytest.raises(DriverError, match="no-such-workdir"):
        run(ensure_venv(VenvOptions(packages=["six"]), missing, str(tmp_path / "c")))
    assert leftovers(tmp_path / "c") == []


# --- real builds --------------------------------------------------------------------------


@pytest.mark.usefixtures("online")
def test_two_versions_of_one_library_side_by_side(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    venvs = {}
    for version in ("1.16.0", "1.15.0"):
        agent = tmp_path / f"agent-{version}"
        write(agent / "requirements.txt", f"six=={version}\n")
        progress = Progress()
        options = VenvOptions(requirements="requirements.txt")
        venv = run(ensure_venv(options, str(agent), str(cache), progress=progress))
        venvs[version] = venv
        assert venv == str(cache / "venvs" / venv_digest(options, str(agent))[:16])
        assert HEADER in progress.text and f"six=={version}".encode() in progress.text
        assert {stream for stream, _ in progress.chunks} == {"stderr"}
    assert venvs["1.16.0"] != venvs["1.15.0"]
    for version, venv in venvs.items():
        assert in_venv(venv, "import six; print(six.__version__)") == version
        assert in_venv(venv, "import sys; print(sys.prefix)") == venv
    assert leftovers(cache) == sorted(os.path.basename(v) for v in venvs.values())


@pytest.mark.usefixtures("online")
def test_cache_hit_runs_no_uv_and_prints_nothing(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "requirements.txt", "six==1.16.0\n")
    options = VenvOptions(requirements="requirements.txt")
    venv = run(ensure_venv(options, str(tmp_path), str(tmp_path / "c")))
    marker = Path(venv) / MARKER
    before = marker.stat().st_mtime_ns

    def no_uv(*_a: object, **_k: object) -> str:
        raise AssertionError("a cache hit must not run uv")

    monkeypatch.setattr(venvbuild, "find_uv", no_uv)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", no_uv)
    progress = Progress()
    again = run(ensure_venv(options, str(tmp_path), str(tmp_path / "c"), progress=progress))
    assert again == venv and progress.chunks == []
    assert marker.stat().st_mtime_ns == before


@pytest.mark.usefixtures("online")
def test_changed_requirements_build_a_new_venv_and_prune_drops_the_old(tmp_path: Path) -> None:
    cache = str(tmp_path / "c")
    requirements = write(tmp_path / "requirements.txt", "six==1.15.0\n")
    options = VenvOptions(requirements="requirements.txt")
    old = run(ensure_venv(options, str(tmp_path), cache))
    requirements.write_text("six==1.16.0\n")
    digest = venv_digest(options, str(tmp_path))
    new = run(ensure_venv(options, str(tmp_path), cache))
    assert new != old and os.path.isdir(old)
    assert in_venv(new, "import six; print(six.__version__)") == "1.16.0"
    os.makedirs(os.path.join(cache, "venvs", ".tmp-0123456789abcdef-crashed"))
    removed = prune_venvs(cache, {digest})
    assert old in removed and not os.path.exists(old)
    assert leftovers(tmp_path / "c") == [os.path.basename(new)]
    assert in_venv(new, "import six; print(six.__version__)") == "1.16.0"
    assert prune_venvs(str(tmp_path / "none"), set()) == []


@pytest.mark.usefixtures("online")
def test_failed_build_shows_uv_and_leaves_nothing(tmp_path: Path) -> None:
    progress = Progress()
    options = VenvOptions(packages=[f"{MISSING}==1.0"])
    with pytest.raises(DriverError) as caught:
        run(ensure_venv(options, str(tmp_path), str(tmp_path / "c"), progress=progress))
    err = caught.value
    assert err.problem.startswith(f"venv build failed for packages {MISSING}==1.0: ")
    assert MISSING in err.problem.split(": ", 1)[1]  # uv's own last line
    assert "uv said:" in err.fix and MISSING in err.fix
    assert MISSING.encode() in progress.text  # streamed as it happened
    assert leftovers(tmp_path / "c") == []


@pytest.mark.usefixtures("online")
def test_unknown_python_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DriverError) as caught:
        run(ensure_venv(VenvOptions(python="3.99"), str(tmp_path), str(tmp_path / "c")))
    assert "3.99" in caught.value.problem and "check the venv's python" in caught.value.fix
    assert leftovers(tmp_path / "c") == []


@pytest.mark.usefixtures("online")
def test_cancelled_build_leaves_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        progress = Progress()
        options = VenvOptions(packages=["six==1.16.0"])
        task = asyncio.create_task(
            ensure_venv(options, str(tmp_path), str(tmp_path / "c"), progress=progress)
        )
        await progress.uv_spoke.wait()  # uv is running now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    assert leftovers(tmp_path / "c") == []
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and uses(pid, tmp_path)]


def uses(pid: str, path: Path) -> bool:
    try:
        return str(path).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.usefixtures("online")
def test_concurrent_calls_build_once(tmp_path: Path) -> None:
    options = VenvOptions(packages=["six==1.16.0"])
    progress = Progress()

    async def many() -> list[str]:
        calls = [
            ensure_venv(options, str(tmp_path), str(tmp_path / "c"), progress=progress)
            for _ in range(4)
        ]
        return await asyncio.gather(*calls)

    results = run(many())
    assert len(set(results)) == 1
    assert progress.text.count(HEADER) == 1
    assert leftovers(tmp_path / "c") == [os.path.basename(results[0])]


@pytest.mark.usefixtures("online")
def test_concurrent_processes_build_once(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from corral.drivers.host.python_env import ensure_venv
        from corral.drivers.host.options import VenvOptions

        class Out:
            def feed(self, stream, data):
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
            def eof(self, stream):
                pass

        options = VenvOptions(packages=["six==1.15.0"])
        venv = asyncio.run(ensure_venv(options, {str(tmp_path)!r}, {str(tmp_path / "c")!r},
                                       progress=Out()))
        print("VENV=" + venv)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) for _ in range(3)
    ]
    outputs = [p.communicate(timeout=90)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert sum(out.count(HEADER) for out in outputs) == 1
    venvs = {line for out in outputs for line in out.splitlines() if line.startswith(b"VENV=")}
    assert len(venvs) == 1
    assert leftovers(tmp_path / "c") == [os.path.basename(venvs.pop()[5:].decode())]


@pytest.mark.usefixtures("online")
def test_pyproject_project_is_installed_with_its_scripts(tmp_path: Path) -> None:
    project = tmp_path / "agent"
    write(
        project / "pyproject.toml",
        """
        [build-system]
        requires = ["flit_core>=3.4,<4"]
        build-backend = "flit_core.buildapi"

        [project]
        name = "corral-demo-agent"
        version = "0.1.0"
        description = "a demo agent"
        dependencies = ["six==1.16.0"]

        [project.scripts]
        corral-demo = "corral_demo_agent:main"
        """,
    )
    write(project / "corral_demo_agent/__init__.py", "def main():\n    print('demo ran')\n")
    options = VenvOptions(pyproject="pyproject.toml", packages=["idna"])
    venv = run(ensure_venv(options, str(project), str(tmp_path / "c")))
    code = "import corral_demo_agent, six, idna; print(corral_demo_agent.__file__, six.__version__)"
    where, six_version = in_venv(venv, code).split()
    assert where.startswith(venv + os.sep)  # installed, not editable
    assert six_version == "1.16.0"
    # The entry-point script was installed in the staging dir; it still runs after the rename.
    script = os.path.join(venv, "bin", "corral-demo")
    env = venv_env(venv, dict(os.environ))
    done = subprocess.run([script], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "demo ran"
