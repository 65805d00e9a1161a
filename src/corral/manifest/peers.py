"""Where the agents of a fleet reach each other, as each one sees it: compose's service names,
at every isolation level.

An agent's **port** is its ``port:`` (where it listens; a container or guest is reached from
the host at the ``ports:`` entry publishing it, if any), else the first it declares: its
``container:`` or ``vm:`` block's first ``ports:`` entry (``"8080"``, or ``"18080:80"``:
published on the host's 127.0.0.1 at 18080, listening on 80 inside), else its readiness
probe's tcp/http port, else its liveness probe's.
Every agent gets, for every other agent with a port that it can reach,
``CORRAL_ADDR_<AGENT>=host:port`` and ``CORRAL_HOST_<AGENT>`` (the host part): ``AGENT``
upper-cased with ``-`` as ``_`` (two names that differ only there share one variable: the
first agent in the manifest has it). The address depends on the networks of both (``network``):

============================  ==================================  ==========================
from \\ to                     on the host (process, venv,          a container on the
                              ``network: host``)                  project network
============================  ==================================  ==========================
the host's network            ``127.0.0.1:PORT``                  ``127.0.0.1:PUBLISHED``
the project network           ``host.containers.internal:PORT``   ``AGENT:PORT`` (its DNS)
a vm guest (NAT)              ``10.0.2.2:PORT``                   ``10.0.2.2:PUBLISHED``
``loopback:NAME``             only the agents of that loopback, at ``127.0.0.1:PORT``
============================  ==================================  ==========================

A vm's forwarded ports are reached from the host's network at ``127.0.0.1:PUBLISHED`` and from
another guest at ``10.0.2.2:PUBLISHED``; an agent with ``network: none`` reaches nothing and
is reached by nothing. An agent placed on a cluster (``placement:``) reaches what the host's
network does, at the host's address as the cluster's nodes see it (its driver replaces
``127.0.0.1`` by it; the agent it reaches must listen there, not only on the host's
loopback), and is reached by no ``CORRAL_ADDR_*``: its node is known only once it is placed.
Inside a sandbox or a container on the host's network (or a loopback), each reachable
agent's name resolves to 127.0.0.1 (``hosts``: bwrap binds a generated /etc/hosts, the
engine gets ``--add-host``); on the project network names resolve through the network's DNS.
Host processes have no /etc/hosts of their own: they use ``CORRAL_ADDR_*``.

**Switching levels keeps the fleet working** (``host_network``): a container on the project
network cannot reach a host process listening on 127.0.0.1, so a container agent that writes
no ``network:`` and depends on an agent on the host runs on the host's network, where its
dependencies are where they were, by name and by port (a dependency it waits for to start,
be healthy or log its ready line: not a job it waits for to complete). Where that cannot
hold (a port it publishes under another number, a dependency on a project container that
publishes no port) the manifest is refused in one line naming the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import NamedTuple

from corral.manifest.spec import LOCAL, Agent, loopback_group

HOST, PROJECT, NONE, GUEST, CLUSTER = "host", "project", "none", "guest", "cluster"
LOOPBACK_IP = "127.0.0.1"
HOST_FROM_BRIDGE = "host.containers.internal"  # Podman's name; Docker's gets it too
HOST_FROM_GUEST = "10.0.2.2"  # QEMU's user-mode network: the host's loopback
RUNNING = ("started", "healthy", "log_ready")  # conditions met while the dependency runs


def network(agent: Agent) -> str:
    """The network an agent is on: host, project (a container on the project network),
    none, loopback:NAME (sandboxes sharing one), guest (a vm's user-mode network), or cluster
    (placed on one: ``placement:``)."""
    if agent.placement not in (None, LOCAL):
        return CLUSTER
    if agent.isolation == "sandbox":
        return agent.network or NONE
    if agent.isolation == "container":
        return agent.network or PROJECT
    if agent.isolation == "vm":
        return GUEST if agent.network == HOST or _published(agent) else NONE
    return HOST  # process, venv and the drivers of other host processes


class Port(NamedTuple):
    inside: int  # where the agent listens
    published: int | None  # where the host reaches it (container and vm ports:)


def _published(agent: Agent) -> list[str]:
    found: list[str] = []
    for key in ("container", "vm"):
        found += getattr(agent.options.get(key), "ports", None) or []
    return found


def port(agent: Agent) -> Port | None:
    """The agent's port (see the module's doc)."""
    published = [(int(outer), int(inner or outer)) for outer, _, inner
                 in (entry.partition(":") for entry in _published(agent))]
    if agent.port is not None:
        outer = agent.port if agent.isolation not in ("container", "vm") else next(
            (o for o, i in published if i == agent.port), None)
        return Port(agent.port, outer)
    if published:
        return Port(published[0][1], published[0][0])
    for probe in (agent.readiness, agent.liveness):
        check = probe and (probe.tcp or probe.http)
        if check:
            return Port(check.port, check.port)
    return None


def scrape_address(agent: Agent, index: int) -> Address | None:
    """Where the host reaches instance ``index`` (from 1) of an agent's own metrics
    (``metrics.port``; instance N at that port + N - 1, so replicas on the host each listen
    on their own): 127.0.0.1 at that port on the host's network, at the port publishing it
    for a container or a guest; None where the host cannot reach it, and for an agent placed
    on a cluster (``placement:``; it runs on another node)."""
    assert agent.metrics is not None
    if agent.placement not in (None, LOCAL):
        return None
    port = agent.metrics.port + index - 1
    where = network(agent)
    if where == HOST:
        return Address(LOOPBACK_IP, port)
    if where in (PROJECT, GUEST):
        published = [(int(outer), int(inner or outer)) for outer, _, inner
                     in (entry.partition(":") for entry in _published(agent))]
        outer = next((o for o, i in published if i == port), None)
        return Address(LOOPBACK_IP, outer) if outer is not None else None
    return None  # network: none, or a loopback of its own


def variable(name: str) -> str:
    return name.upper().replace("-", "_")


class Address(NamedTuple):
    host: str
    port: int | None


def address(agents: Mapping[str, Agent], viewer: str, target: str) -> Address | None:
    """Where ``viewer`` reaches ``target``; None when it cannot."""
    seen, there = network(agents[viewer]), network(agents[target])
    if there == CLUSTER:
        return None  # its node is known once it is placed, and changes at each restart
    if seen == CLUSTER:
        seen = HOST  # as seen from this host; its driver puts the host's address for 127.0.0.1
    found = port(agents[target])
    inner = found.inside if found else None
    outer = found.published if found else None
    if NONE in (seen, there):
        return None
    if loopback_group(seen) or loopback_group(there):
        return Address(LOOPBACK_IP, inner) if seen == there else None
    if there == HOST:
        host = {HOST: LOOPBACK_IP, PROJECT: HOST_FROM_BRIDGE, GUEST: HOST_FROM_GUEST}[seen]
        return Address(host, inner)
    if there == PROJECT and seen == PROJECT:
        return Address(target, inner)
    if outer is None:  # a project container or a guest: only its published ports are out
        return None
    if seen == HOST:
        return Address(LOOPBACK_IP, outer)
    if seen == GUEST:
        return Address(HOST_FROM_GUEST, outer)
    return None  # a guest's forwards are on the host's loopback: no container reaches them


def environment(agents: Mapping[str, Agent], viewer: str) -> dict[str, str]:
    """``CORRAL_ADDR_<AGENT>`` and ``CORRAL_HOST_<AGENT>`` of every agent with a port that
    ``viewer`` reaches."""
    out: dict[str, str] = {}
    for target in agents:
        if target == viewer:
            continue
        where = address(agents, viewer, target)
        key = variable(target)
        if where is None or where.port is None or f"CORRAL_ADDR_{key}" in out:
            continue
        out[f"CORRAL_ADDR_{key}"] = f"{where.host}:{where.port}"
        out[f"CORRAL_HOST_{key}"] = where.host
    return out


def hosts(agents: Mapping[str, Agent], viewer: str) -> tuple[tuple[str, str], ...]:
    """The hosts entries (name, address) of a sandbox or container: every agent it reaches
    at an address (the project network's DNS has the others' names already)."""
    if agents[viewer].isolation not in ("sandbox", "container"):
        return ()
    out = []
    for target in agents:
        where = address(agents, viewer, target) if target != viewer else None
        if where is not None and where.host == LOOPBACK_IP:
            out.append((target, where.host))
    return tuple(out)


def digest(env: Mapping[str, str], names: tuple[tuple[str, str], ...]) -> bytes:
    """For an instance's spec hash: where it finds the others (its ``CORRAL_ADDR_*`` and
    ``CORRAL_HOST_*``, its hosts entries), so an agent is restarted when one it reaches
    moves; nothing for an agent that reaches none."""
    found = sorted((k, v) for k, v in env.items() if k.startswith(("CORRAL_ADDR_",
                                                                     "CORRAL_HOST_")))
    return repr((found, names)).encode() if found or names else b""


# --- switching levels -----------------------------------------------------------------------


def host_network(agents: Mapping[str, Agent]
                 ) -> tuple[dict[str, Agent], list[str], list[str]]:
    """``agents`` with each container that writes no ``network:`` and depends on an agent on
    the host's network moved there (and so on, for what depends on those); the problems that
    keep such a container from reaching its dependencies there; and a note for each move."""
    out = dict(agents)
    why: dict[str, str] = {}
    moved = True
    while moved:
        moved = False
        for name, agent in out.items():
            if network(agent) != PROJECT:
                continue
            on_host = [d for d, how in agent.depends_on.items() if d in out
                       and network(out[d]) == HOST and how.condition in RUNNING]
            if on_host:
                out[name] = replace(agent, network=HOST)
                why[name] = on_host[0]
                moved = True
    problems, notes = [], []
    for name, dep in why.items():
        problems += _unreachable(out, name, dep)
        notes.append(f"agents.{name}: runs on the host's network, where it reaches {dep} (a "
                     f"{out[dep].isolation} agent) as before (write network: host to say so)")
    return out, problems, notes


def _unreachable(agents: Mapping[str, Agent], name: str, dep: str) -> list[str]:
    agent = agents[name]
    level = agents[dep].isolation
    reason = f"agents.{name}: runs on the host's network to reach {dep} (a {level} agent)"
    problems = []
    for entry in _published(agent):
        outer, _, inner = entry.partition(":")
        if inner and inner != outer:
            problems.append(f"{reason}, where port {entry} cannot be remapped: publish "
                            f'"{inner}" (it listens on the host itself), or run {dep} in a '
                            "container too")
    for other in agent.depends_on:
        if other in agents and network(agents[other]) == PROJECT \
                and port(agents[other]) is not None and address(agents, name, other) is None:
            problems.append(f"{reason}, and cannot reach {other} on the project network: "
                            f"publish its port (container: {{ports: [PORT]}}) or run {dep} "
                            "in a container too")
    return problems


def unreachable_warnings(agents: Mapping[str, Agent]) -> list[str]:
    """Dependencies an agent cannot reach that listen on a port: a sandbox without a
    network depending on a server, say (compose's habit is one network for all)."""
    out = []
    for name, agent in agents.items():
        for dep in agent.depends_on:
            if dep in agents and port(agents[dep]) is not None \
                    and address(agents, name, dep) is None:
                fix = _fix(agent, agents[dep], dep)
                out.append(f"agents.{name}: cannot reach {dep} (its network is "
                           f"{network(agent)}, {dep}'s {network(agents[dep])}): {fix}")
    return out


def _fix(agent: Agent, dependency: Agent, dep: str) -> str:
    if agent.isolation == "sandbox" and network(agent) == NONE:
        return "add network: host"
    if network(dependency) == PROJECT:
        return "publish its port (container: {ports: [PORT]})"
    return f"give it a network that reaches {dep}"
