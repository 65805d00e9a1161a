"""The checks a Ray node runs for a placed agent's probes (``drivers/ray/checks.py``, over the
looks the supervisor's own checks take, ``drivers/host/looks.py``), here on this host against
real sockets, processes and files: each says what it saw, and a heartbeat never leads out of
the workdir nor opens what it looks at."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

from corral.drivers.host.looks import heartbeat
from corral.drivers.ray.checks import run_check


def _check(**check: object) -> tuple[bool, str]:
    return asyncio.run(run_check({"timeout": 2.0, **check}, "/", dict(os.environ), 0.0))


def test_tcp_and_exec_checks_say_what_they_saw() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert _check(kind="tcp", host="127.0.0.1", port=port) == (
            True, f"tcp 127.0.0.1:{port} accepts connections")
    ok, detail = _check(kind="tcp", host="127.0.0.1", port=port)
    assert not ok and detail.startswith(f"tcp 127.0.0.1:{port}: ")
    assert _check(kind="exec", command=["sh", "-c", "echo fine"]) == (
        True, "exec sh: exit 0: fine")
    assert _check(kind="exec", command=["sh", "-c", "exit 3"]) == (False, "exec sh: exit 3")
    assert _check(kind="exec", command=["sleep", "30"], timeout=0.3) == (
        False, "exec check timed out after 0.3s")


def test_a_heartbeat_is_a_regular_file_inside_the_workdir(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "outside").touch()
    os.symlink(tmp_path / "outside", work / "link")
    os.mkfifo(work / "fifo")
    (work / "beat").touch()
    now = time.time()
    ok, detail = heartbeat("link", 60, str(work), 0, now)
    assert not ok and detail.startswith("heartbeat link: ") and "outside" in detail
    assert heartbeat("fifo", 60, str(work), 0, now) == (
        False, "heartbeat fifo is not a regular file")
    assert heartbeat("beat", 60, str(work), 0, now)[0]
    assert heartbeat("beat", 1, str(work), 0, now + 5) == (
        False, "heartbeat beat not touched for 5s (within: 1s)")
    assert heartbeat("none", 10, str(work), now, now + 1) == (
        True, "heartbeat none not made yet")
