"""Where each agent reaches every other (``manifest.peers``): the address table, hosts
entries, and the host network a container takes to keep reaching a host agent."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from corral.errors import ManifestError
from corral.manifest import decode, peers
from corral.manifest.loader import load_text
from corral.manifest.spec import Manifest

FLEET = """
name: peers
agents:
  db:
    command: redis-server
    readiness: {tcp: 6379}
  web-app:
    isolation: container
    container: {image: img, ports: ["18080:80"]}
    command: serve
  hidden:
    isolation: container
    container: {image: img}
    command: serve
    liveness: {http: {port: 9000}}
  box:
    isolation: sandbox
    network: host
    command: run
  lone:
    isolation: sandbox
    command: run
  guest:
    isolation: vm
    vm: {ports: ["2222:22"]}
    command: run
  ring-a:
    isolation: sandbox
    network: loopback:ring
    command: run
    port: 7000
  ring-b:
    isolation: sandbox
    network: loopback:ring
    command: run
"""


def _load(tmp_path: Path, text: str = FLEET) -> Manifest:
    return load_text(textwrap.dedent(text), project_dir=str(tmp_path), environ={})


def test_each_network_sees_the_others_where_they_are(tmp_path: Path) -> None:
    agents = _load(tmp_path).agents
    assert peers.environment(agents, "box") == {
        "CORRAL_HOST_DB": "127.0.0.1", "CORRAL_ADDR_DB": "127.0.0.1:6379",
        "CORRAL_HOST_WEB_APP": "127.0.0.1", "CORRAL_ADDR_WEB_APP": "127.0.0.1:18080",
        # a container's probe runs on the host: its port is published there
        "CORRAL_HOST_HIDDEN": "127.0.0.1", "CORRAL_ADDR_HIDDEN": "127.0.0.1:9000",
        "CORRAL_HOST_GUEST": "127.0.0.1", "CORRAL_ADDR_GUEST": "127.0.0.1:2222"}
    assert peers.environment(agents, "hidden") == {
        "CORRAL_HOST_DB": "host.containers.internal",
        "CORRAL_ADDR_DB": "host.containers.internal:6379",
        "CORRAL_HOST_WEB_APP": "web-app", "CORRAL_ADDR_WEB_APP": "web-app:80"}
    assert peers.environment(agents, "guest") == {
        "CORRAL_HOST_DB": "10.0.2.2", "CORRAL_ADDR_DB": "10.0.2.2:6379",
        "CORRAL_HOST_WEB_APP": "10.0.2.2", "CORRAL_ADDR_WEB_APP": "10.0.2.2:18080",
        "CORRAL_HOST_HIDDEN": "10.0.2.2", "CORRAL_ADDR_HIDDEN": "10.0.2.2:9000"}
    assert peers.environment(agents, "ring-b") == {
        "CORRAL_HOST_RING_A": "127.0.0.1", "CORRAL_ADDR_RING_A": "127.0.0.1:7000"}
    assert peers.environment(agents, "lone") == {}


def test_names_resolve_where_an_address_is_the_loopback(tmp_path: Path) -> None:
    agents = _load(tmp_path).agents
    assert peers.hosts(agents, "box") == (("db", "127.0.0.1"), ("web-app", "127.0.0.1"),
                                          ("hidden", "127.0.0.1"), ("guest", "127.0.0.1"))
    assert peers.hosts(agents, "ring-b") == (("ring-a", "127.0.0.1"),)
    assert peers.hosts(agents, "hidden") == ()  # the project network's DNS has the names
    assert peers.hosts(agents, "db") == ()  # a host process has no /etc/hosts of its own


def test_a_declared_port_is_where_it_listens(tmp_path: Path) -> None:
    """``port:`` names the port among several published, or one nothing else declares; a
    container reached from the host only where a ``ports:`` entry publishes it."""
    agents = _load(tmp_path, """
        name: peers
        agents:
          flask: {command: x, port: 5000}
          api:
            isolation: container
            container: {image: img, ports: ["9090", "18080:80"]}
            command: x
            port: 80
          inner:
            isolation: container
            container: {image: img}
            command: x
            port: 7000
          me: {command: x}
    """).agents
    assert peers.environment(agents, "me") == {
        "CORRAL_HOST_FLASK": "127.0.0.1", "CORRAL_ADDR_FLASK": "127.0.0.1:5000",
        "CORRAL_HOST_API": "127.0.0.1", "CORRAL_ADDR_API": "127.0.0.1:18080"}
    assert peers.environment(agents, "inner")["CORRAL_ADDR_API"] == "api:80"
    assert peers.environment(agents, "api")["CORRAL_ADDR_INNER"] == "inner:7000"


def test_two_names_that_differ_in_dash_and_underscore_share_the_first(tmp_path: Path) -> None:
    agents = _load(tmp_path, """
        name: peers
        agents:
          a-b: {command: x, readiness: {tcp: 1001}}
          a_b: {command: x, readiness: {tcp: 1002}}
          me: {command: x}
    """).agents
    assert peers.environment(agents, "me")["CORRAL_ADDR_A_B"] == "127.0.0.1:1001"


def test_a_container_depending_on_a_host_server_moves_to_the_host_network(
        tmp_path: Path) -> None:
    warnings: list[str] = []
    agents = load_text(textwrap.dedent("""
        name: peers
        agents:
          seed: {command: x, restart: "no"}
          rabbit: {command: x, readiness: {tcp: 5673}}
          worker:
            isolation: container
            container: {image: img}
            command: x
            depends_on: {rabbit: {condition: healthy}}
          front:
            isolation: container
            container: {image: img}
            command: x
            depends_on: [worker]
          job:
            isolation: container
            container: {image: img}
            command: x
            depends_on: {seed: {condition: completed_successfully}}
    """), project_dir=str(tmp_path), environ={}, warnings=warnings).agents
    assert warnings == [
        "agents.worker: runs on the host's network, where it reaches rabbit (a process agent) "
        "as before (write network: host to say so)",
        "agents.front: runs on the host's network, where it reaches worker (a container "
        "agent) as before (write network: host to say so)"]
    assert agents["worker"].network == "host"
    assert agents["front"].network == "host"  # it reaches worker where worker went
    assert agents["job"].network is None  # a finished job is not reached over a network
    assert peers.environment(agents, "worker")["CORRAL_ADDR_RABBIT"] == "127.0.0.1:5673"
    assert peers.hosts(agents, "front") == (("seed", "127.0.0.1"), ("rabbit", "127.0.0.1"),
                                            ("worker", "127.0.0.1"))


@pytest.mark.parametrize("extra, problem", [
    ('container: {image: img, ports: ["18080:80"]}\n    depends_on: [rabbit]',
     "agents.worker: runs on the host's network to reach rabbit (a process agent), where port "
     "18080:80 cannot be remapped: publish \"80\" (it listens on the host itself), or run "
     "rabbit in a container too"),
    ("container: {image: img}\n    depends_on: [rabbit, store]",
     "agents.worker: runs on the host's network to reach rabbit (a process agent), and cannot "
     "reach store on the project network: publish its port (container: {ports: [PORT]}) or "
     "run rabbit in a container too"),
])
def test_a_container_that_cannot_keep_its_reach_is_refused(tmp_path: Path, extra: str,
                                                           problem: str) -> None:
    text = f"""
name: peers
agents:
  rabbit: {{command: x, readiness: {{tcp: 5673}}}}
  store:
    isolation: container
    container: {{image: img}}
    command: x
    port: 9000
  worker:
    isolation: container
    command: x
    {extra}
"""
    with pytest.raises(ManifestError) as caught:
        load_text(text, project_dir=str(tmp_path), environ={})
    assert caught.value.problems == [problem]


def test_unreachable_servers_are_warned(tmp_path: Path) -> None:
    agents = _load(tmp_path, """
        name: peers
        agents:
          rabbit: {command: x, readiness: {tcp: 5673}}
          seed: {command: x, restart: "no"}
          store:
            isolation: container
            container: {image: img}
            command: x
            port: 9000
          boxed:
            isolation: sandbox
            command: x
            depends_on: [rabbit, seed]
          open:
            isolation: sandbox
            network: host
            command: x
            depends_on: [store]
    """).agents
    assert peers.unreachable_warnings(agents) == [
        "agents.boxed: cannot reach rabbit (its network is none, rabbit's host): add network: "
        "host",
        "agents.open: cannot reach store (its network is host, store's project): publish its "
        "port (container: {ports: [PORT]})"]


def test_port_is_hashed_only_when_set(tmp_path: Path) -> None:
    """An upgrade restarts no agent for a ``port:`` it does not write; writing one is a
    change of spec."""
    agents = _load(tmp_path, """
        name: peers
        agents:
          a: {command: x}
          b: {command: x, port: 5000}
    """).agents
    assert b'"port"' not in decode.canonical(agents["a"])
    assert b'"port":5000' in decode.canonical(agents["b"])


def test_an_agent_placed_on_a_cluster_reaches_the_host_and_is_reached_by_no_address(
        tmp_path: Path) -> None:
    """From a cluster's node the host's agents are where the host's network has them (its
    driver swaps 127.0.0.1 for the host's address); the placed agent's own node is known only
    once it is placed, so no one gets an address for it."""
    agents = _load(tmp_path, FLEET + """
  placed:
    command: run
    placement: ray
    port: 7100
""").agents
    assert peers.network(agents["placed"]) == peers.CLUSTER
    seen = peers.environment(agents, "placed")
    assert seen["CORRAL_ADDR_DB"] == "127.0.0.1:6379"
    assert seen["CORRAL_ADDR_WEB_APP"] == "127.0.0.1:18080"  # where it is published
    assert "CORRAL_ADDR_RING_A" not in seen  # a loopback's agents are its own
    for viewer in ("db", "box", "hidden", "guest"):
        assert "CORRAL_ADDR_PLACED" not in peers.environment(agents, viewer)


def test_a_node_reaches_the_host_at_its_address_on_the_way_to_the_cluster() -> None:
    from corral.drivers.ray.driver import seen_from

    env = {"CORRAL_ADDR_DB": "127.0.0.1:6379", "CORRAL_HOST_DB": "127.0.0.1",
           "CORRAL_ADDR_WEB": "web:80", "OTHER": "127.0.0.1:1"}
    assert seen_from(env, "10.0.0.7") == {
        "CORRAL_ADDR_DB": "10.0.0.7:6379", "CORRAL_HOST_DB": "10.0.0.7",
        "CORRAL_ADDR_WEB": "web:80", "OTHER": "127.0.0.1:1"}
    assert seen_from(env, "127.0.0.1") == env  # a cluster on this host's loopback
