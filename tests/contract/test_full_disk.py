"""A full disk under the logs: nothing torn, doubled or lost; the agent's output waits in its
pipe and is written once there is room. A real 8 MB tmpfs is the disk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.drivers.base import Task
from corral.drivers.process import ProcessDriver
from corral.logs.sink import AgentLog
from corral.manifest.spec import Agent


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()}); needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as f:
        while True:
            f.write(b"\0" * 4096)
    return filler


def test_a_failed_write_is_taken_back_whole(small_disk: Path) -> None:
    log = AgentLog(small_disk / "logs", "web")
    out = log.writer("web.1")
    out.feed("stdout", b"first\npart")
    filler = fill(small_disk)
    size = log.path.stat().st_size
    with pytest.raises(OSError):
        out.feed("stdout", b"ial\n" + b"y" * 60_000 + b"\nthird\n")
    assert log.path.stat().st_size == size, "no torn record left behind"
    filler.unlink()
    out.feed("stdout", b"ial\n" + b"y" * 60_000 + b"\nthird\n")
    log.close()
    messages = [json.loads(line)["message"] for line in log.path.read_text().splitlines()]
    assert messages == ["first", "partial", "y" * 60_000, "third"]


@pytest.mark.parametrize(("lines", "width"), [(3000, 1000), (1500, 80)],
                         ids=["blocks-on-its-pipe", "exits-before-there-is-room"])
def test_output_waits_in_the_pipe_until_there_is_room(small_disk: Path, tmp_path: Path,
                                                      lines: int, width: int) -> None:
    code = f"for i in range({lines}): print('line', i, 'x' * {width}, flush=True)"
    spec = Agent(command=[sys.executable, "-c", code])
    blocks = lines * width > 1 << 20  # more than the pipe holds
    task = Task(project="t", agent="a", instance="a.1", index=1, spec=spec,
                workdir=str(tmp_path), run_dir=str(tmp_path / "run" / "a.1"),
                cache_dir=str(tmp_path / "cache"), env={"PATH": os.environ["PATH"]})
    log = AgentLog(small_disk / "logs", "a")

    async def go() -> None:
        filler = fill(small_disk)
        driver = ProcessDriver()
        handle = await driver.start(task, log.writer("a.1"))
        await asyncio.sleep(1.5)  # the disk is full: the output waits in the pipe
        exited = driver.exit_future(handle)
        assert exited is not None and exited.done() is not blocks
        filler.unlink()
        result = await asyncio.wait_for(driver.wait(handle), 60)
        assert result.code == 0
        for _ in range(100):  # an agent that exited first is read out once there is room
            if log.path.read_bytes().count(b"\n") >= lines:
                break
            await asyncio.sleep(0.05)

    asyncio.run(go())
    log.close()
    numbers = [int(json.loads(line)["message"].split()[1])
               for line in log.path.read_text().splitlines()]
    assert numbers == list(range(lines)), "every line once, in order"
