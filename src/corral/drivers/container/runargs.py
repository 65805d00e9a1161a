"""What an instance's container is made of (``RunSpec``), and that spec as the engine is given
it: ``run -d`` flags for the CLI (``cli_args``) or a create request for the API (``api_body``).

Kept apart from the driver so the lifecycle (start, wait, stop, recover) reads on its own, and
in one neutral form so the CLI fallback and the API can never drift apart. Names follow
compose's: ``corral-<project>`` for the network, ``corral-<project>-<volume>`` for named
volumes, ``corral-<project>-<instance>`` for containers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from corral.drivers.base import Task
from corral.drivers.host import beneath, walls
from corral.environ import for_guest
from corral.errors import DriverError
from corral.manifest import decode, peers

SECRETS_IN_CONTAINER = "/run/secrets"
DATA_IN_CONTAINER = "/var/lib/corral/data"  # the agent's CORRAL_STATE_DIR, kept on the host
_NAME = re.compile(r"[^a-zA-Z0-9_.-]+")


def _name(*parts: str) -> str:
    return _NAME.sub("-", "-".join(parts)).strip("-.")


def network_name(project: str) -> str:
    return _name("corral", project)


def volume_name(project: str, volume: str) -> str:
    return _name("corral", project, volume)


def container_name(project: str, instance: str) -> str:
    return _name("corral", project, instance)


def spec_hash(task: Task, image: str) -> str:
    """The spec, the image it runs and where it finds the other agents: a running container
    is adopted by a new ``start`` only when all are what this start would create (a rebuilt
    image, or an agent it reaches that moved, means a new container)."""
    return decode.spec_hash(task.spec, b"\0" + image.encode(),
                            peers.digest(task.env, task.hosts))


@dataclass(frozen=True, slots=True)
class Bind:
    source: str  # a host path, or a named volume's engine name
    target: str
    read_only: bool = False

    def flag(self) -> str:
        return f"{self.source}:{self.target}{':ro' if self.read_only else ''}"


@dataclass(frozen=True, slots=True)
class Port:
    host_ip: str
    host_port: str
    container_port: str


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One container as corral creates it, engine-neutral."""

    name: str
    image: str
    argv: tuple[str, ...]
    labels: dict[str, str]
    env: dict[str, str]  # what the agent sees
    network: str  # none, host, or the project network
    alias: str | None = None  # the agent's name on the project network
    binds: tuple[Bind, ...] = ()
    ports: tuple[Port, ...] = ()
    hosts: tuple[tuple[str, str], ...] = ()  # (name, address): the other agents' names
    cpus: float | None = None
    memory: int | None = None  # and as much memory+swap: no swap, the limit OOM-kills
    memory_reservation: int | None = None
    pids: int | None = None
    volumes: tuple[str, ...] = field(default=())  # named volumes it needs (engine names)


def spec(task: Task, *, name: str, image: str, labels: dict[str, str],
         published: tuple[str, ...], engine: str = "podman") -> RunSpec:
    """The container for ``task`` (checks host paths; creates nothing)."""
    res = task.spec.resources
    mode = task.spec.network
    network = mode if mode in ("none", "host") else network_name(task.project)
    hosts = task.hosts
    if engine == "docker" and mode not in ("none", "host"):
        # Podman names the host so on every network; Docker only when asked (>= 20.10)
        hosts = (*hosts, (peers.HOST_FROM_BRIDGE, "host-gateway"))
    binds, volumes = mounts(task)
    return RunSpec(
        name=name, image=image, argv=tuple(task.spec.argv), labels=labels, env=env(task),
        network=network, alias=None if mode in ("none", "host") else task.agent,
        # on the host's network it listens on the host itself: nothing to publish
        binds=binds, ports=() if network == "host" else ports(published), hosts=hosts,
        cpus=res.cpus, memory=res.memory,
        memory_reservation=res.memory_reservation, pids=res.pids, volumes=volumes)


def mounts(task: Task) -> tuple[tuple[Bind, ...], tuple[str, ...]]:
    """Volumes (named ones as engine volumes), secrets and the data dir; and the named
    volumes' engine names (the driver makes sure they exist).

    A host source may be one an agent rearranged between two runs, so it is resolved
    beneath its root as for a sandbox (``drivers.beneath``: a link out of the project or
    corral's dirs is refused) and the engine is given the *canonical* path of what was
    found, a path with no link in it, checked again right before the create (``recheck``).
    Not ``/proc/<corral>/fd/N``, as bwrap gets: the engine resolves the path in another
    process (dockerd, Podman's service, rootless Podman in its own user and mount
    namespaces, then the OCI runtime), which may not see corral's /proc at all. What is
    left is the moment between ``recheck`` and the runtime's mount: the agent's own
    container is not running then (this is a new create); only another process that may
    write a parent of the source could swap it, which no sandbox or container is given by
    default (the project dir and corral's dirs are theirs only through declared binds)."""
    binds: list[Bind] = []
    named: list[str] = []
    for v in task.spec.volumes:
        if v.named:
            name = volume_name(task.project, os.path.basename(v.source))
            named.append(name)
            binds.append(Bind(name, v.target, v.read_only))
            continue
        binds.append(Bind(walls.canonical(task, v.source, "volumes"), v.target, v.read_only))
    secrets = task.env.get("CORRAL_SECRETS_DIR")
    if secrets:
        binds.append(Bind(walls.canonical(task, secrets, "secrets"), SECRETS_IN_CONTAINER,
                          True))
    data = task.env.get("CORRAL_STATE_DIR")
    if data:
        os.makedirs(data, exist_ok=True)
        binds.append(Bind(walls.canonical(task, data, "data dir"), DATA_IN_CONTAINER))
    return tuple(binds), tuple(named)


def recheck(task: Task, s: RunSpec) -> None:
    """Immediately before the create: each host source is still link-free, or a component
    was swapped for a link since ``mounts`` resolved it (the create is refused)."""
    for b in s.binds:
        if b.source.startswith("/") and not beneath.link_free(b.source):
            raise DriverError(f"agents.{task.agent}: {b.source} (bound at {b.target}) became "
                              "a link since it was checked: refused", walls.REFUSED_FIX)


def ports(published: tuple[str, ...]) -> tuple[Port, ...]:
    """Published on loopback unless an address is given (an agent is not exposed to the
    network by default, as at every other level). ``8080`` is the same number on both
    sides, ``18080:80`` host:container."""
    found = []
    for port in published:
        parts = port.rsplit(":", 2)
        if len(parts) == 1:
            parts = ["127.0.0.1", parts[0], parts[0]]
        elif len(parts) == 2:
            parts = ["127.0.0.1", *parts]
        found.append(Port(*parts))
    return tuple(found)


def env(task: Task) -> dict[str, str]:
    """The agent's environment inside the container: the host-only settings left out, the
    secrets and data dirs as the container sees them."""
    inner = for_guest(task.env, task.spec)
    if inner.get("CORRAL_SECRETS_DIR"):
        inner["CORRAL_SECRETS_DIR"] = SECRETS_IN_CONTAINER
    if inner.get("CORRAL_STATE_DIR"):
        inner["CORRAL_STATE_DIR"] = DATA_IN_CONTAINER
    return inner


# --- the CLI: ``run -d`` ------------------------------------------------------------------


def cli_args(s: RunSpec, engine: str) -> tuple[list[str], dict[str, str]]:
    """``run -d`` and the CLI's environment. The env's values travel in that environment
    (``-e NAME``), never in the argv where ``ps`` shows them."""
    argv = ["run", "-d", "--name", s.name, "--init"]
    for key, value in s.labels.items():
        argv += ["--label", f"{key}={value}"]
    if s.cpus is not None:
        argv += ["--cpus", f"{s.cpus:g}"]
    if s.memory is not None:
        argv += ["--memory", str(s.memory), "--memory-swap", str(s.memory)]
    if s.memory_reservation is not None:
        argv += ["--memory-reservation", str(s.memory_reservation)]
    if s.pids is not None:
        argv += ["--pids-limit", str(s.pids)]
    argv += ["--network", s.network]
    if s.alias:
        argv += ["--network-alias", s.alias]
    for name, address in s.hosts:
        argv += ["--add-host", f"{name}:{address}"]
    for b in s.binds:
        argv += ["-v", b.flag()]
    for p in s.ports:
        argv += ["-p", f"{p.host_ip}:{p.host_port}:{p.container_port}"]
    for key in sorted(s.env):
        argv += ["-e", key]
    if engine == "docker":
        argv += ["--pull", "never"]
    argv += [s.image, *s.argv]
    cli_env = {**s.env, "PATH": os.environ.get("PATH", os.defpath),
               "HOME": os.environ.get("HOME", "/root")}
    for key in ("XDG_RUNTIME_DIR", "DOCKER_HOST", "CONTAINER_HOST", "CONTAINERS_CONF"):
        if key in os.environ and key not in s.env:
            cli_env[key] = os.environ[key]
    return argv, cli_env


# --- the API: ``POST /containers/create`` (Docker's, as Podman's compat API reads it) ------


def api_body(s: RunSpec) -> dict[str, Any]:
    host: dict[str, Any] = {"Init": True, "NetworkMode": s.network,
                            "Binds": [b.flag() for b in s.binds]}
    if s.cpus is not None:
        host["NanoCpus"] = round(s.cpus * 1e9)
    if s.memory is not None:
        host["Memory"] = host["MemorySwap"] = s.memory
    if s.memory_reservation is not None:
        host["MemoryReservation"] = s.memory_reservation
    if s.pids is not None:
        host["PidsLimit"] = s.pids
    if s.hosts:
        host["ExtraHosts"] = [f"{name}:{address}" for name, address in s.hosts]
    exposed: dict[str, Any] = {}
    if s.ports:
        bindings: dict[str, list[dict[str, str]]] = {}
        for p in s.ports:
            key = p.container_port if "/" in p.container_port else f"{p.container_port}/tcp"
            exposed[key] = {}
            bindings.setdefault(key, []).append({"HostIp": p.host_ip, "HostPort": p.host_port})
        host["PortBindings"] = bindings
    body: dict[str, Any] = {
        "Image": s.image, "Labels": dict(s.labels),
        "Env": [f"{k}={v}" for k, v in sorted(s.env.items())], "HostConfig": host}
    if s.argv:  # none given: the image's own CMD runs
        body["Cmd"] = list(s.argv)
    if exposed:
        body["ExposedPorts"] = exposed
    if s.alias:
        body["NetworkingConfig"] = {"EndpointsConfig": {s.network: {"Aliases": [s.alias]}}}
    return body
