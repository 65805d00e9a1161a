"""Where the agents reach each other in the cluster: a Service per agent with a port, the
others' ``CORRAL_ADDR_<AGENT>``/``CORRAL_HOST_<AGENT>`` at its DNS name, and a NetworkPolicy
per network rule. On a host, corral puts agents on the host's network, a project network, a
shared loopback or none (``manifest.peers``); in a cluster every pod is on the pod network and
reaches the others through their Services, so the rules become policies: ``network: none``
denies every packet in and out, ``loopback:NAME`` admits only the pods of that group (a label
per group) both ways (and DNS, to find them by name), ``host`` is ``hostNetwork``."""

from __future__ import annotations

from typing import Any

from corral.convert.export.kubernetes.names import LOOPBACK, PROJECT, dns_label, label_value, meta
from corral.convert.export.kubernetes.plan import Obj, Plan
from corral.manifest import peers
from corral.manifest.spec import LOOPBACK as LOOPBACK_MODE
from corral.manifest.spec import Agent, loopback_group

POD, NONE, HOST = "pod", "none", "host"


def _host_levels(agent: Agent) -> bool:
    # a pod in the cluster, where the agent was placed on one or not
    return peers.network(agent) in (peers.HOST, peers.CLUSTER) and agent.isolation != "container"


def mode(plan: Plan, name: str) -> str:
    """pod, none, host, or loopback:NAME. A container the loader moved to the host's network
    to reach a host process (``peers.host_network``) is a pod like them."""
    found = plan.modes.get(name)
    if found is None:
        found = plan.modes[name] = _mode(plan, name)
    return found


def _mode(plan: Plan, name: str) -> str:
    agent = plan.agent(name)
    net = peers.network(agent)
    group = loopback_group(net)
    if group is not None:
        return f"{LOOPBACK_MODE}{group}"
    if net == peers.NONE and (agent.network == "none" or agent.isolation == "sandbox"):
        return NONE
    if agent.network == "host" and agent.isolation in ("sandbox", "container"):
        moved = agent.isolation == "container" and any(
            d in plan.manifest.agents and _host_levels(plan.agent(d))
            and how.condition in peers.RUNNING for d, how in agent.depends_on.items())
        return POD if moved else HOST
    return POD


def group_of(value: str) -> str | None:
    return loopback_group(value)


def ports(agent: Agent) -> list[int]:
    """Every port the agent listens on: its published ports (inside numbers), ``port:``, and
    its probes' ports, in that order, once each."""
    found: list[int] = []
    for key in ("container", "vm"):
        for entry in getattr(agent.options.get(key), "ports", None) or []:
            outer, _, inner = str(entry).partition(":")
            found.append(int(inner or outer))
    if agent.port is not None:
        found.append(agent.port)
    for probe in (agent.readiness, agent.liveness):
        check = probe and (probe.tcp or probe.http)
        if check:
            found.append(check.port)
    return list(dict.fromkeys(found))


def plan_services(plan: Plan) -> None:
    """Decide each agent's Service (name, ports) before anything refers to one."""
    for name, agent in plan.manifest.agents.items():
        found = ports(agent)
        if found:
            plan.services[name] = (plan.names.of_agent(name), found)


def service(plan: Plan, name: str) -> Obj | None:
    if name not in plan.services:
        return None
    agent = plan.agent(name)
    svc, found = plan.services[name]
    published = [str(p) for key in ("container", "vm")
                 for p in getattr(agent.options.get(key), "ports", None) or []]
    if published:
        block = "container" if agent.options.get("container") is not None else "vm"
        report_ports = ", ".join(f"{p.partition(':')[2] or p}" for p in published)
        plan.report.changed(name, f"{block}.ports", f"a ClusterIP Service {svc} in the cluster "
                            f"({report_ports}), published on no host: reach it with kubectl "
                            f"port-forward svc/{svc} LOCAL:PORT, or an Ingress")
    spec: dict[str, Any] = {"selector": plan.names.selector(name),
                            "ports": [{"name": f"p{p}", "port": p, "targetPort": p,
                                       "protocol": "TCP"} for p in found]}
    if agent.needs.internet_facing:
        plan.report.changed(name, "needs.internet_facing", "its Service is ClusterIP: expose "
                            "it with an Ingress or type LoadBalancer yourself")
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": meta(svc, plan.names.agent_labels(name), plan.namespace),
            "spec": spec}


def reaches(plan: Plan, viewer: str, target: str) -> bool:
    seen, there = mode(plan, viewer), mode(plan, target)
    if NONE in (seen, there):
        return False
    if group_of(seen) or group_of(there):
        return seen == there
    return True


def addresses(plan: Plan, viewer: str) -> dict[str, str]:
    """The viewer's ``CORRAL_ADDR_*``/``CORRAL_HOST_*``: each agent it reaches with a port,
    at its Service's name and the port ``manifest.peers`` would give (the first agent of two
    sharing a variable has it, as on the host)."""
    if not plan.peers:
        for target, (svc, _) in plan.services.items():
            found = peers.port(plan.agent(target))
            if found is not None:
                plan.peers.append((target, peers.variable(target), svc, found.inside))
    out: dict[str, str] = {}
    seen = mode(plan, viewer)
    open_view = seen in (POD, HOST)
    for target, key, svc, port in plan.peers:
        if target == viewer or f"CORRAL_ADDR_{key}" in out:
            continue
        there = plan.modes.get(target) or mode(plan, target)
        if not (open_view and there in (POD, HOST)) \
                and not reaches(plan, viewer, target):
            continue
        out[f"CORRAL_ADDR_{key}"] = f"{svc}:{port}"
        out[f"CORRAL_HOST_{key}"] = svc
    return out


def pod_settings(plan: Plan, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """What the agent's network rule adds to its pod spec, and to its pod labels."""
    how = mode(plan, name)
    agent = plan.agent(name)
    group = group_of(how)
    if group is not None:
        plan.report.changed(name, "network", f"loopback:{group}: its pods and the group's "
                            "others admit only each other (a NetworkPolicy; and DNS) and reach "
                            "each other at their Services' names (CORRAL_ADDR_*), not "
                            "127.0.0.1")
        return {}, {LOOPBACK: label_value(group)}
    if how == NONE:
        plan.report.changed(name, "network", "none: a NetworkPolicy denies its pods every "
                            "packet in and out (enforced where the cluster's network plugin "
                            "enforces NetworkPolicies)")
    elif how == HOST:
        plan.report.changed(name, "network", "host: hostNetwork on the node it is scheduled "
                            "to (the node's network, not corral's host)")
        return {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}, {}
    elif agent.network == "host" and agent.isolation == "container":
        plan.report.changed(name, "network", "host (to reach host processes): in the "
                            "cluster they are pods too, reached through their Services")
    return {}, {}


def policies(plan: Plan) -> list[Obj]:
    """One deny-all policy per agent without a network, one per loopback group."""
    out: list[Obj] = []
    groups: dict[str, None] = {}
    api: set[str] = set()  # the modes of agents whose init containers ask the API
    for name in plan.manifest.agents:
        how = mode(plan, name)
        if name in plan.waiters and (how == NONE or group_of(how) is not None):
            api.add(how)
            plan.report.changed(name, "network", "its pods may also reach the API server's "
                                "ports (443, 6443) and DNS: its init containers wait for its "
                                "dependencies through the API")
        if how == NONE:
            out.append(_policy(plan, f"{plan.names.of_agent(name)}-deny-all",
                               plan.names.agent_labels(name), plan.names.selector(name), None,
                               api=name in plan.waiters))
        elif (group := group_of(how)) is not None:
            groups[group] = None
    for group in groups:
        members = {PROJECT: label_value(plan.manifest.name), LOOPBACK: label_value(group)}
        out.append(_policy(plan, dns_label(f"{plan.manifest.name}-loopback-{group}"),
                           plan.names.fleet_labels(), members, members,
                           api=f"{LOOPBACK_MODE}{group}" in api))
    return out


DNS = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
API = {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}


def _policy(plan: Plan, name: str, labels: dict[str, str], selector: dict[str, str],
            peers_of: dict[str, str] | None, *, api: bool = False) -> Obj:
    """No rule: nothing in or out. ``peers_of``: those pods both ways, and DNS. ``api``: the
    API server's ports too, and DNS (for init containers that wait through the API)."""
    spec: dict[str, Any] = {"podSelector": {"matchLabels": selector},
                            "policyTypes": ["Ingress", "Egress"]}
    egress: list[dict[str, Any]] = []
    if peers_of is not None:
        them = [{"podSelector": {"matchLabels": peers_of}}]
        spec["ingress"] = [{"from": them}]
        egress += [{"to": them}, DNS]
    if api:
        egress += [API] if peers_of is not None else [DNS, API]
    if egress:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta(name, labels, plan.namespace), "spec": spec}
