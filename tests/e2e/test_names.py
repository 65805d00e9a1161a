"""Agents find each other at every level, and switching an agent's level keeps what it was:
the addresses corral injects (``CORRAL_ADDR_*``), the names that resolve inside sandboxes and
containers, and a sandbox around a venv agent keeping its venv."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corral.drivers.container.engine import Engine
from corral.drivers.host.bwrap import find_bwrap
from tests.e2e.conftest import Project
from tests.support.engines import IMAGE
from tests.support.thirdparty import wheel

needs_bwrap = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap (bwrap) is not "
                                 "installed: apt-get install bubblewrap (scripts/install.sh "
                                 "--test does)")


@needs_bwrap
def test_a_sandbox_around_a_venv_agent_keeps_its_venv(project: Project, tmp_path: Path) -> None:
    """The agent was ``isolation: venv`` with a requirements.txt naming a local wheel; one
    word moves it to ``sandbox`` and it still imports the package (no ``venv:`` block)."""
    built = wheel(tmp_path, "tinyword", "1.0", {"tinyword.py": "WORD = 'from-the-wheel'\n"})
    project.file("app/requirements.txt", f"tinyword @ {built.as_uri()}\n")
    project.file("app/main.py", "import tinyword\nprint(tinyword.WORD)\n")
    project.write("""
        name: boxvenv
        agents:
          app:
            isolation: sandbox
            workdir: app
            restart: "no"
            command: python main.py
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: r["app.1"]["state"] in ("exited", "fatal"), timeout=120,
                            what="app to exit")
    messages = [r["message"] for r in project.records("app")]
    assert rows["app.1"]["exit_code"] == 0, messages
    assert "from-the-wheel" in messages


SERVER = """\
import socket, sys
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen()
while True:
    conn, _ = listener.accept()
    conn.sendall(b"pong\\n")
    conn.close()
"""

# connects to the server by each name given (the address's host when "ADDR"), prints replies
CLIENT = """\
import os, socket, sys
addr = os.environ["CORRAL_ADDR_MY_SRV"]
host, port = addr.rsplit(":", 1)
print("addr", addr, "host", os.environ["CORRAL_HOST_MY_SRV"])
for name in sys.argv[1:]:
    with socket.create_connection((host if name == "ADDR" else name, int(port)), 5) as conn:
        print(name, conn.recv(16).decode().strip())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fleet(project: Project, name: str, level: list[str], *names: str,
           script: str = "code/client.py") -> int:
    """``my-srv`` on the host (a TCP server with a tcp readiness probe) and ``client`` at
    the level ``level``'s lines say, which waits for it to be healthy and reaches it by each
    of ``names``; the server's port."""
    port = _free_port()
    project.file("srv.py", SERVER)
    project.file("code/client.py", CLIENT)
    block = "".join(f"\n            {line}" for line in level)
    project.write(f"""
        name: {name}
        agents:
          my-srv:
            command: [{sys.executable!r}, srv.py, "{port}"]
            readiness: {{tcp: {{port: {port}}}, period: 0.2}}
          client:
            restart: "no"
            depends_on: {{my-srv: {{condition: healthy}}}}
            command: [python3, {script}, {", ".join(names)}]{block}
    """)
    return port


def _replies(project: Project, timeout: float = 60) -> list[str]:
    rows = project.wait_for(lambda r: r.get("client.1", {}).get("state") in ("exited", "fatal"),
                            timeout=timeout, what="client to exit")
    messages = [r["message"] for r in project.records("client")]
    assert rows["client.1"]["exit_code"] == 0, messages
    return messages


def test_a_host_process_reaches_another_by_its_address(project: Project) -> None:
    """Host processes have no names of their own: ``CORRAL_ADDR_MY_SRV`` (``-`` as ``_``)
    is 127.0.0.1 with the port its probe declares."""
    port = _fleet(project, "namesproc", [], "ADDR")
    project.corral("up", "-d")
    assert _replies(project) == [f"addr 127.0.0.1:{port} host 127.0.0.1", "ADDR pong"]


@needs_bwrap
def test_a_sandbox_reaches_a_host_agent_by_its_name(project: Project) -> None:
    """On the host's network a sandbox's /etc/hosts names the fleet's agents: ``my-srv``
    resolves to 127.0.0.1 inside, and the address works too."""
    port = _fleet(project, "namesbox", ["isolation: sandbox", "network: host"],
                  "my-srv", "ADDR")
    project.corral("up", "-d")
    assert _replies(project) == [f"addr 127.0.0.1:{port} host 127.0.0.1", "my-srv pong",
                                 "ADDR pong"]


def test_a_netless_sandbox_depending_on_a_server_is_warned_at_up(project: Project) -> None:
    """A sandbox has no network by default: ``up`` says in one line that it cannot reach
    the server it waits for, and what to add."""
    _fleet(project, "namesnonet", ["isolation: sandbox"], "ADDR")
    up = project.corral("up", "-d")
    assert ("corral: warning: agents.client: cannot reach my-srv (its network is none, "
            "my-srv's host): add network: host\n") in up.stderr


PODMAN = {"CORRAL_CONTAINER_ENGINE": "podman"}


def test_a_container_moved_from_venv_still_reaches_its_host_dependency(
        project: Project, podman_engine: Engine) -> None:
    """One word moves the client into a container: it depends on a host-level server, so it
    runs on the host's network, where ``my-srv`` resolves (``--add-host``) and the address
    is the same as before."""
    port = _fleet(project, "ctnames", ["isolation: container", f"container: {{image: {IMAGE}}}",
                                       'volumes: ["./code:/code:ro"]'], "my-srv", "ADDR",
                  script="/code/client.py")
    up = project.corral("up", "-d", env=PODMAN)
    assert ("WARN: agents.client: runs on the host's network, where it reaches my-srv (a "
            "process agent) as before (write network: host to say so)\n") in up.stderr
    assert _replies(project, timeout=120) == [f"addr 127.0.0.1:{port} host 127.0.0.1",
                                              "my-srv pong", "ADDR pong"]


def test_containers_on_the_project_network_reach_each_other_by_name(
        project: Project, podman_engine: Engine) -> None:
    """Two containers with no host dependency stay on the project network: the client gets
    ``my-srv:PORT`` (the port inside) and the name resolves through the network's DNS;
    from the host the server is at its published port."""
    inner, published = _free_port(), _free_port()
    project.file("code/srv.py", SERVER.replace('"127.0.0.1"', '"0.0.0.0"'))
    project.file("code/client.py", CLIENT)
    project.write(f"""
        name: ctnamesnet
        agents:
          my-srv:
            isolation: container
            container: {{image: {IMAGE}, ports: ["{published}:{inner}"]}}
            volumes: ["./code:/code:ro"]
            command: [python3, /code/srv.py, "{inner}"]
            readiness: {{tcp: {{port: {published}}}, period: 0.2}}
          client:
            isolation: container
            container: {{image: {IMAGE}}}
            restart: "no"
            depends_on: {{my-srv: {{condition: healthy}}}}
            volumes: ["./code:/code:ro"]
            command: [python3, /code/client.py, my-srv, ADDR]
          probe:
            restart: "no"
            command: [python3, -c, "import os; print(os.environ['CORRAL_ADDR_MY_SRV'])"]
    """)
    project.corral("up", "-d", env=PODMAN)
    assert _replies(project, timeout=120) == [f"addr my-srv:{inner} host my-srv",
                                              "my-srv pong", "ADDR pong"]
    assert [r["message"] for r in project.records("probe")] == [f"127.0.0.1:{published}"]


def test_a_container_that_cannot_keep_its_reach_is_refused_in_one_line(
        project: Project) -> None:
    """On the host's network a port cannot be published under another number: ``up`` says
    so before anything starts, and what to change."""
    _fleet(project, "ctnamesbad", ["isolation: container", f"container: {{image: {IMAGE}, "
                                   "ports: [\"18080:80\"]}"], "ADDR")
    up = project.corral("up", "-d", check=False)
    assert up.returncode == 2, up.stderr
    assert ("agents.client: runs on the host's network to reach my-srv (a process agent), "
            "where port 18080:80 cannot be remapped: publish \"80\" (it listens on the host "
            "itself), or run my-srv in a container too\n") in up.stderr
    assert len(up.stderr.splitlines()) == 1, up.stderr
    assert "Traceback" not in up.stderr


def test_corral_run_gets_the_addresses_and_port_names_one(project: Project) -> None:
    """``port:`` says where an agent without probes listens (a Flask app, say); a one-off
    ``corral run`` gets the same addresses as the daemon's instances."""
    project.write("""
        name: namesrun
        agents:
          web-app: {command: [sleep, "60"], port: 5000}
          tool:
            restart: "no"
            command: [sh, -c, 'echo "$$CORRAL_ADDR_WEB_APP $$CORRAL_HOST_WEB_APP"']
    """)
    run = project.corral("run", "tool")
    assert run.stdout == "127.0.0.1:5000 127.0.0.1\n"


# as CLIENT, retrying while the server starts (a loopback has no probe from the host)
PATIENT = """\
import os, socket, sys, time
host, port = os.environ["CORRAL_ADDR_MY_SRV"].rsplit(":", 1)
for name in ("my-srv", host):
    for _ in range(300):
        try:
            with socket.create_connection((name, int(port)), 5) as conn:
                print(name, conn.recv(16).decode().strip())
                break
        except ConnectionRefusedError:
            time.sleep(0.1)
"""


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="a shared loopback needs corral to run as root")
def test_sandboxes_sharing_a_loopback_reach_each_other_by_name(project: Project) -> None:
    port = _free_port()
    project.file("srv.py", SERVER)
    project.file("patient.py", PATIENT)
    project.write(f"""
        name: namesloop
        agents:
          my-srv:
            isolation: sandbox
            network: loopback:ring
            port: {port}
            command: [python3, srv.py, "{port}"]
          client:
            isolation: sandbox
            network: loopback:ring
            restart: "no"
            depends_on: [my-srv]
            command: [python3, patient.py]
    """)
    project.corral("up", "-d")
    assert _replies(project) == ["my-srv pong", "127.0.0.1 pong"]


def test_an_agent_restarts_when_one_it_reaches_moves(project: Project) -> None:
    """``up`` after the server's port changed restarts the agent that reaches it (its
    address changed) and leaves alone one whose own ``env`` says the address."""
    def write(port: int) -> None:
        project.write(f"""
            name: namesmove
            agents:
              my-srv: {{command: [sleep, "300"], port: {port}}}
              client:
                command: [sh, -c, 'echo "$$CORRAL_ADDR_MY_SRV"; exec sleep 300']
              pinned:
                command: [sleep, "300"]
                env: {{CORRAL_ADDR_MY_SRV: "", CORRAL_HOST_MY_SRV: ""}}
        """)

    def said(addr: str) -> Callable[[dict[str, dict[str, Any]]], bool]:
        return lambda rows: addr in [r["message"] for r in project.records("client")]

    write(5001)
    project.corral("up", "-d")
    before = project.wait_for(said("127.0.0.1:5001"), what="the first address")
    write(5002)
    up = project.corral("up", "-d")
    after = project.wait_for(said("127.0.0.1:5002"), what="the new address")
    assert after["client.1"]["pid"] != before["client.1"]["pid"], up.stdout
    assert after["my-srv.1"]["pid"] != before["my-srv.1"]["pid"]  # its own spec changed
    assert after["pinned.1"]["pid"] == before["pinned.1"]["pid"]


@pytest.mark.parametrize("engine_name", ["podman", "docker"])
def test_a_project_container_reaches_a_host_agent_through_the_host_name(
        project: Project, engine_name: str, request: pytest.FixtureRequest) -> None:
    """Without a dependency to keep it there, a container stays on the project network; a
    host agent listening beyond 127.0.0.1 is at ``host.containers.internal:PORT`` (Docker is
    given that name too)."""
    request.getfixturevalue(f"{engine_name}_engine")
    port = _free_port()
    project.file("code/srv.py", SERVER.replace('"127.0.0.1"', '"0.0.0.0"'))
    project.file("code/patient.py", PATIENT.replace('for name in ("my-srv", host)',
                                                    "for name in (host,)"))
    project.write(f"""
        name: ctnameshost
        agents:
          my-srv:
            command: [{sys.executable!r}, code/srv.py, "{port}"]
            port: {port}
          client:
            isolation: container
            container: {{engine: {engine_name}, image: {IMAGE}}}
            restart: "no"
            volumes: ["./code:/code:ro"]
            command: [python3, /code/patient.py]
    """)
    project.corral("up", "-d", env={"CORRAL_CONTAINER_ENGINE": engine_name})
    assert _replies(project, timeout=120) == ["host.containers.internal pong"]


# busybox in the guest: the address, then what the server says there
GUEST_CLIENT = 'echo "$$CORRAL_ADDR_MY_SRV"; nc $${CORRAL_ADDR_MY_SRV%:*} $${CORRAL_ADDR_MY_SRV#*:}'


@pytest.mark.vm
def test_a_vm_guest_reaches_a_host_agent_at_its_address(project: Project,
                                                         vm_guest: str) -> None:
    """A guest on QEMU's user-mode network reaches the host's loopback at 10.0.2.2: its
    ``CORRAL_ADDR_MY_SRV`` says so, and a connection there gets the server's reply."""
    port = _free_port()
    project.file("srv.py", SERVER)
    project.write(f"""
        name: vmnames
        agents:
          my-srv:
            command: [{sys.executable!r}, srv.py, "{port}"]
            readiness: {{tcp: {{port: {port}}}, period: 0.2}}
          client:
            class: compute
            isolation: vm
            network: host
            restart: "no"
            depends_on: {{my-srv: {{condition: healthy}}}}
            resources: {{cpus: 1, memory: 192M}}
            vm: {{boot_timeout: 120s}}
            command: [sh, -c, '{GUEST_CLIENT} </dev/null']
    """)
    project.corral("up", "-d", timeout=300)
    rows = project.wait_for(lambda r: r["client.1"]["state"] in ("exited", "fatal"),
                            timeout=240, what="the guest to run and power off")
    records = project.records("client")
    said = [r["message"] for r in records if r["stream"] == "stdout"]  # not the console's
    assert rows["client.1"]["exit_code"] == 0, records
    assert said == [f"10.0.2.2:{port}", "pong"], records
