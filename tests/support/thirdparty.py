"""A third-party driver, as a package built in the test and installed with pip.

``tinyexec`` lives outside corral: it registers itself in the ``corral.drivers`` entry-point
group, declares its own manifest block (``tinyexec: {interpreter, niceness}``), and runs an
agent's command with that interpreter (``sh -c``) in its own process group. It imports only
corral's public driver interface (``drivers.base``, ``lean.record``, ``manifest.rules``).

No build backend is needed offline: the wheel is a zip written here (PEP 427: the package,
``METADATA``, ``WHEEL``, ``entry_points.txt``, ``RECORD``), and pip installs it like any other
(``--no-index --no-deps --target DIR``); DIR on ``sys.path``/``PYTHONPATH`` makes it
installed for ``importlib.metadata``.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

NAME = "tinyexec"
DIST = "corral_tinyexec"
VERSION = "0.1"

DRIVER = '''"""A small third-party corral driver: the agent's command through an interpreter."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Annotated, ClassVar

from corral.drivers.base import Capabilities, Driver, ExitResult, Handle, Output, Task
from corral.lean.record import Record, record
from corral.manifest.bounds import Range
from corral.manifest.rules import Within


@record(kw_only=True)
class TinyOptions(Record):
    """How tinyexec runs the command: ``INTERPRETER -c "COMMAND"``, at a niceness."""

    __pydantic_config__ = {"extra": "forbid"}
    interpreter: str = "/bin/sh"
    niceness: Annotated[int, Within(Range(0, 19))] = 0


class TinyExecDriver(Driver):
    name: ClassVar[str] = "tinyexec"
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="tinyexec", recover=False, stats=False, signals=True)
    blocks: ClassVar[dict[str, type]] = {"tinyexec": TinyOptions}

    def __init__(self) -> None:
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._pumps: dict[str, list[asyncio.Task[None]]] = {}

    async def start(self, task: Task, output: Output) -> Handle:
        options: TinyOptions = task.spec.options.get("tinyexec") or TinyOptions()
        proc = await asyncio.create_subprocess_exec(
            options.interpreter, "-c", " ".join(task.spec.command), cwd=task.workdir,
            env=dict(task.env), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=(lambda: os.nice(options.niceness)) if options.niceness else None)
        self._procs[task.instance] = proc
        self._pumps[task.instance] = [
            asyncio.create_task(self._pump(proc.stdout, "stdout", output)),
            asyncio.create_task(self._pump(proc.stderr, "stderr", output))]
        return Handle(driver=self.name, instance=task.instance, pid=proc.pid,
                      started_at=time.time())

    @staticmethod
    async def _pump(stream: asyncio.StreamReader | None, name: str, output: Output) -> None:
        assert stream is not None
        while chunk := await stream.read(65536):
            output.feed(name, chunk)  # type: ignore[arg-type]
        output.eof(name)  # type: ignore[arg-type]

    async def wait(self, handle: Handle) -> ExitResult:
        proc = self._procs[handle.instance]
        code = await proc.wait()
        await asyncio.gather(*self._pumps.pop(handle.instance, []))
        if code < 0:
            return ExitResult(code=128 - code, signal=-code)
        return ExitResult(code=code)

    async def stop(self, handle: Handle, *, sig: int, timeout: float) -> None:
        proc = self._procs.get(handle.instance)
        if proc is None or proc.returncode is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
'''

ENTRY_POINTS = f'[corral.drivers]\n{NAME} = tinyexec_driver:TinyExecDriver\n'


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(
        b"=").decode()


def wheel(out: Path, dist: str, version: str, files: dict[str, str],
          entry_points: str = "") -> Path:
    """A pure-Python wheel of ``files`` (path in the wheel -> text) in ``out``, installable
    with no index and no build backend (pip, uv)."""
    info = f"{dist}-{version}.dist-info"
    content = {**files, f"{info}/METADATA":
               f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
               f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: corral-tests\n"
                                "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    if entry_points:
        content[f"{info}/entry_points.txt"] = entry_points
    record = "".join(f"{name},{_digest(text.encode())},{len(text.encode())}\n"
                     for name, text in content.items()) + f"{info}/RECORD,,\n"
    path = out / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in {**content, f"{info}/RECORD": record}.items():
            archive.writestr(name, text)
    return path


def build_wheel(out: Path) -> Path:
    """The package as a wheel in ``out``."""
    return wheel(out, DIST, VERSION, {"tinyexec_driver/__init__.py": DRIVER}, ENTRY_POINTS)


def install(root: Path) -> Path:
    """Build the wheel and pip-install it into ``root/site``; that dir, to put on the path."""
    root.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(root)
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
                    "--no-deps", "--disable-pip-version-check", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=120)
    return site
