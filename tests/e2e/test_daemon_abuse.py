"""The daemon under abuse (issue 8): thousands of half-open connections on its socket and its
metrics port (there as the unprivileged user nobody), and an agent restarting while the
daemon has no descriptor to spare. Real daemon, real CLI, its descriptor limit lowered."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import textwrap
import time
from typing import Any

import pytest

from tests.e2e.conftest import CORRAL, Project
from tests.e2e.test_fleet import free_port

DAEMON_NOFILE = 1024  # the daemon's soft and hard limit: 2,000 connections would exhaust it
TIMEOUT = 3.0  # header and idle timeouts for the test's daemon (CORRAL_HTTP_*_TIMEOUT)
ENV = {"CORRAL_HTTP_HEADER_TIMEOUT": str(TIMEOUT), "CORRAL_HTTP_IDLE_TIMEOUT": str(TIMEOUT)}


def _fleet(project: Project, port: int) -> None:
    project.write(f"""
        name: abuse
        metrics: {{port: {port}}}
        agents:
          crasher:
            command: [sh, -c, "sleep 0.3; exit 1"]
            restart: {{policy: always, backoff: {{initial: 0.1s, max: 0.2s}}}}
          steady: {{command: sleep 600}}
    """)


def _up(project: Project) -> int:
    """``corral up -d`` with the daemon's descriptor limit lowered (it inherits the CLI's)."""
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (DAEMON_NOFILE, DAEMON_NOFILE))

    subprocess.run([*CORRAL, "-f", str(project.manifest), "up", "-d"], cwd=project.root,
                   check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                   env={**os.environ, **ENV}, preexec_fn=lower)
    pid = project.daemon_pid()
    assert pid is not None
    return pid


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _raise_own_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"this test needs {need} descriptors; the hard limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))


def _half_open(family: int, address: Any, n: int) -> list[socket.socket]:
    """``n`` connections that send half a request head and then nothing."""
    held = []
    for _ in range(n):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(address)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # the backlog is full: the daemon is shedding, as it should
            s.close()
            continue
        with contextlib.suppress(OSError):
            s.send(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
        held.append(s)
    return held


def _held_open(held: list[socket.socket]) -> int:
    """How many of ``held`` are connected and not closed by the daemon (no EOF, 408 or 503
    yet). A TCP connect whose SYN the full backlog dropped is still being retried by this
    kernel: not connected, it holds nothing in the daemon."""
    n = 0
    for s in held:
        try:
            data = s.recv(4096)
        except BlockingIOError:
            try:
                s.getpeername()
            except OSError:
                continue
            n += 1
            continue
        except OSError:
            continue
        assert data == b"" or data.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503")), data
    return n


def _scrape(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def _timed_ps(project: Project) -> tuple[float, dict[str, dict[str, Any]]]:
    t0 = time.monotonic()
    out = project.corral("ps", "--json", timeout=30)
    return time.monotonic() - t0, {r["name"]: r for r in json.loads(out.stdout)}


def test_held_connections_neither_wedge_supervision_nor_keep_the_cli_out(
        project: Project) -> None:
    _raise_own_limit(6000)
    port = free_port()
    _fleet(project, port)
    pid = _up(project)
    project.wait_for(lambda r: r["steady.1"]["state"] == "running", what="the fleet up")
    baseline = _fds(pid)
    sock = str(project.state_dir / "corral.sock")
    held = _half_open(socket.AF_UNIX, sock, 2000)
    held += _half_open(socket.AF_INET, ("127.0.0.1", port), 1000)
    try:
        time.sleep(0.5)
        # never more than the caps (256 + 32) over what the fleet holds, far from the limit
        assert _fds(pid) <= baseline + 256 + 32 + 16, _fds(pid)
        took, rows = _timed_ps(project)
        assert took < 5, f"corral ps took {took:.1f}s under the flood"
        before = rows["crasher.1"]["restarts"]
        assert b"corral_instance_up" in _scrape(port)  # a scraper still gets through
        time.sleep(1.5)
        _, rows = _timed_ps(project)
        assert rows["crasher.1"]["restarts"] >= before + 2, (rows["crasher.1"],
                                                              project.daemon_log()[-3000:])
        assert rows["crasher.1"]["state"] in ("running", "backoff", "starting", "preparing")
        # past the header timeout every half-open connection is closed by the daemon; those
        # the kernel queued in the listeners' backlogs are accepted as room frees, and get
        # their own timeout. (Client-side, only the Unix ones tell: a TCP flood past the
        # backlog gets SYN cookies, "connections" this kernel never gave the daemon.)
        unix = [s for s in held if s.family == socket.AF_UNIX]
        deadline = time.monotonic() + 3 * TIMEOUT + 5
        while (still := _held_open(unix)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert still == 0
        while _fds(pid) > baseline + 4 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _fds(pid) <= baseline + 4, (_fds(pid), baseline)
        log = project.state_dir / "daemon.log"
        assert log.stat().st_size < 64 * 1024, project.daemon_log()[-2000:]
        # a fresh flood held through `corral down`: it completes all the same
        held += _half_open(socket.AF_UNIX, sock, 1000)
        t0 = time.monotonic()
        project.corral("down", timeout=60)
        assert time.monotonic() - t0 < 20
    finally:
        for s in held:
            s.close()


NOBODY_CLIENT = textwrap.dedent("""
    import socket, sys
    port, n = int(sys.argv[1]), int(sys.argv[2])
    held = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            continue
        try:
            s.send(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n")
        except OSError:
            pass
        held.append(s)
    print(len(held), flush=True)
    sys.stdin.read()
""")


def test_the_metrics_port_holds_at_its_cap_against_another_user(project: Project) -> None:
    setpriv, python = shutil.which("setpriv"), "/usr/bin/python3"
    if os.geteuid() != 0 or setpriv is None or not os.access(python, os.X_OK):
        pytest.skip("needs root, setpriv and /usr/bin/python3 to act as the user nobody")
    port = free_port()
    _fleet(project, port)
    pid = _up(project)
    project.wait_for(lambda r: r["steady.1"]["state"] == "running", what="the fleet up")
    baseline = _fds(pid)
    flood = subprocess.Popen(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c",
         NOBODY_CLIENT, str(port), "900"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert flood.stdout is not None
        assert int(flood.stdout.readline()) > 0
        time.sleep(0.5)
        # the cap, plus what a burst of accepts has dropped and not yet closed, plus the
        # crasher's pipes between runs
        assert _fds(pid) <= baseline + 32 + 16, (_fds(pid), baseline)
        assert b"corral_instance_up" in _scrape(port)
        took, _ = _timed_ps(project)
        assert took < 5
    finally:
        assert flood.stdin is not None
        flood.stdin.close()
        flood.wait(30)
        if flood.stdout is not None:
            flood.stdout.close()
    project.corral("down", timeout=60)


def test_an_agent_restarting_while_the_daemon_is_out_of_descriptors_recovers(
        project: Project) -> None:
    port = free_port()
    _fleet(project, port)
    pid = _up(project)
    project.wait_for(lambda r: r["crasher.1"]["restarts"] >= 1, what="the crasher restarting")
    events = socket.socket(socket.AF_UNIX)
    events.connect(str(project.state_dir / "corral.sock"))
    events.sendall(b"GET /v1/events HTTP/1.0\r\n\r\n")
    events.settimeout(10)
    seen = events.recv(65536)
    # no descriptor left: every open, pipe and accept in the daemon fails with EMFILE
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, DAEMON_NOFILE))
    try:
        deadline = time.monotonic() + 10
        while b"Too many open files" not in seen and time.monotonic() < deadline:
            seen += events.recv(65536)
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (DAEMON_NOFILE, DAEMON_NOFILE))
    records = [json.loads(line.partition(b"data: ")[2]) for line in seen.splitlines()
               if line.startswith(b"data: ")]
    failed = [r for r in records if "Too many open files" in r.get("reason", "")]
    assert failed and failed[0]["state"] == "backoff", records[-5:]
    assert "start failed: Too many open files; restarting in" in failed[0]["reason"]
    events.close()
    # by itself, once descriptors are back: running again and counting restarts
    rows = project.wait_for(lambda r: r["crasher.1"]["state"] == "running"
                            and r["crasher.1"]["restarts"] > failed[-1]["restarts"],
                            what="the crasher running again", timeout=30)
    assert rows["steady.1"]["state"] == "running"
    log = project.daemon_log()
    assert log.count("accepting paused") <= 2, log[-3000:]
    project.corral("restart", "crasher")
    project.corral("down", timeout=60)


def test_a_bad_limit_setting_stops_up_with_one_line(project: Project) -> None:
    project.write("""
        name: knobs
        agents:
          a: {command: sleep 60}
    """)
    proc = project.corral("up", "-d", check=False,
                          env={"CORRAL_HTTP_IDLE_TIMEOUT": "soon"})
    assert proc.returncode != 0
    assert "CORRAL_HTTP_IDLE_TIMEOUT='soon' is not a number of seconds above 0" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_descriptors_stay_reserved_for_the_fleet_whatever_the_cap(project: Project) -> None:
    """A cap set above what the descriptor limit allows: the reserve (64 + 8 per instance)
    still holds, and the crash-looping agent's spawns keep succeeding."""
    _raise_own_limit(4000)
    ENV["CORRAL_API_MAX_CONNECTIONS"] = "5000"
    try:
        _fleet(project, free_port())
        pid = _up(project)
    finally:
        del ENV["CORRAL_API_MAX_CONNECTIONS"]
    project.wait_for(lambda r: r["steady.1"]["state"] == "running", what="the fleet up")
    held: list[socket.socket] = []
    try:
        for _ in range(10):  # in rounds: past the backlog a Unix connect is refused
            held += _half_open(socket.AF_UNIX, str(project.state_dir / "corral.sock"), 200)
            time.sleep(0.1)
        time.sleep(0.5)
        reserve = 64 + 8 * 2
        fds = _fds(pid)
        assert fds >= DAEMON_NOFILE - reserve - 16  # the flood reached the reserve...
        # ...and left it free, less what the fleet itself holds (the agents' pipes, pidfds)
        assert DAEMON_NOFILE - fds >= 64, fds
        _, rows = _timed_ps(project)
        before = rows["crasher.1"]["restarts"]
        time.sleep(1.5)
        _, rows = _timed_ps(project)
        assert rows["crasher.1"]["restarts"] >= before + 2, rows["crasher.1"]
        assert "Too many open files" not in project.daemon_log()
    finally:
        for s in held:
            s.close()
    project.corral("down", timeout=60)
