"""A real local Ray cluster for the tests: a head and a second worker node (a raylet of its
own), both on loopback addresses (127.0.0.2 and .3), on free ports picked at start.

Each node is one ``ray start --block`` in a session of its own: it keeps its Ray processes as
children, tears them down on SIGTERM, and kills the rest when one dies (the worker node's
raylet, killed by a test, takes its node down as a lost machine would). Both are stopped by
their PIDs, their process groups killed after a grace period; nothing else on the machine is
touched. GCS health checks run fast here, so a lost node is declared dead in about a second.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

READY = "Ray runtime started"
# GCS declares a node dead after 3 missed checks 300 ms apart (default: 5 of 3 s)
FAST_HEALTH = {"RAY_health_check_period_ms": "300", "RAY_health_check_timeout_ms": "300",
               "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "0"}


# Ray turns ``--node-ip-address 127.0.0.1`` (and an ``--address`` there) into the machine's
# outward address; other loopback addresses it keeps, so each node has one of its own
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Node:
    """One ``ray start --block`` and its log."""

    proc: subprocess.Popen[bytes]
    log: Path

    def raylet_pid(self) -> int:
        """The node's raylet: the child of ``ray start`` running the raylet binary."""
        for pid in _children(self.proc.pid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
        raise AssertionError(f"no raylet under ray start {self.proc.pid}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
        with contextlib.suppress(ProcessLookupError):  # the node's session, started here
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@dataclass
class Cluster:
    address: str  # the head's GCS, 127.0.0.2:PORT
    head: Node
    worker: Node | None
    env: dict[str, str] = field(default_factory=dict)
    dashboard: str = ""  # the head's dashboard (Ray's job submission API), http://HOST:PORT
    client: str = ""  # the head's Ray Client server, ray://HOST:PORT

    @contextlib.contextmanager
    def extra_node(self, tmp: Path, ip: str = "127.0.0.4") -> Iterator[Node]:
        """One more worker node for as long as the block runs (one a test may lose)."""
        node = _start([_cli(), "start", "--address", self.address,
                       *_node_ports(ip, random.randrange(38000, 46000, 1000))],
                      tmp / f"node-{ip}.log", self.env)
        try:
            yield node
        finally:
            node.stop()

    def ray(self, *args: str, timeout: float = 60) -> str:
        """The ``ray`` CLI against this cluster (``ray list jobs``...): its stdout."""
        proc = subprocess.run([_cli(), *args, "--address", self.address], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=True)
        return proc.stdout


def _cli() -> str:
    return str(Path(sys.executable).parent / "ray")


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _start(argv: list[str], log: Path, env: dict[str, str], timeout: float = 90) -> Node:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    node = Node(proc, log)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if READY in log.read_text(errors="replace"):
                return node
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    except BaseException:
        node.stop()
        raise
    tail = log.read_text(errors="replace").strip().splitlines()[-5:]
    node.stop()
    raise RuntimeError(f"ray start did not come up: {' | '.join(tail)}")


def _node_ports(ip: str, first_worker_port: int) -> list[str]:
    return ["--node-ip-address", ip, "--num-cpus", "2", "--disable-usage-stats",
            "--min-worker-port", str(first_worker_port),
            "--max-worker-port", str(first_worker_port + 999),
            "--dashboard-agent-listen-port", str(_free_port()),
            "--metrics-export-port", str(_free_port()), "--block"]


@contextlib.contextmanager
def cluster(tmp: Path, *, worker: bool = True) -> Iterator[Cluster]:
    """A head (and a worker node) until the block ends; skipped when Ray is not installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.skip("ray is not installed: pip install 'corral[ray]' (scripts/install.sh "
                    "--test installs it)")
    cli = _cli()
    # no token auth, said explicitly: a head started with no mode turns it on when the user
    # has a ~/.ray/auth_token (Ray makes one at a first local ray.init)
    env = {**os.environ, **FAST_HEALTH, "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled"}
    port, dashboard = _free_port(), _free_port()
    # two worker port ranges of 1000, clear of the Ray Client's per-client servers
    # (23000-24000 on the head)
    base = random.choice((25000, 27000, 29000, 31000, 33000, 35000))
    client = _free_port()
    head = _start([cli, "start", "--head", "--port", str(port), "--dashboard-host",
                   "127.0.0.1", "--dashboard-port", str(dashboard),
                   "--ray-client-server-port", str(client), "--temp-dir",
                   str(tmp / "head"), *_node_ports(HEAD_IP, base)], tmp / "head.log", env)
    address = f"{HEAD_IP}:{port}"
    nodes = [head]
    try:
        second = None
        if worker:
            second = _start([cli, "start", "--address", address, "--num-gpus", "1",
                             *_node_ports(WORKER_IP, base + 1000)], tmp / "worker.log", env)
            nodes.append(second)
        yield Cluster(address, head, second, env, f"http://127.0.0.1:{dashboard}",
                      f"ray://{HEAD_IP}:{client}")
    finally:
        for node in reversed(nodes):
            node.stop()
