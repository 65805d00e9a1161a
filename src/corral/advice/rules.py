"""Which isolation level fits an agent, and why (the seed's Table 1 as rules).

The rules read facts from the manifest (class, trust, what the agent needs, what it exposes,
which credentials it holds) and from the host (which levels work here, what each costs to
start, measured here). They go from the strongest need to the weakest; the first that applies
decides, and every rule that applies is given as a reason. ``warnings`` flags risky choices
the manifest already made, for ``corral up`` to print once.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

LEVELS = ("process", "venv", "sandbox", "container", "vm")
STRENGTH = {level: i for i, level in enumerate(LEVELS)}

# Table 1 of the seed, with the two levels it leaves out (plain process, sandbox) added.
PROFILE = {
    "process": "no isolation but the workdir; starts in milliseconds; no overhead",
    "venv": "its own Python packages; starts in milliseconds; low overhead; "
            "language-specific, low portability",
    "sandbox": "namespaces (own view of files, processes, network) on the host kernel; "
               "starts in ~10 ms; almost no overhead",
    "container": "its own OS userland and image on the host kernel; starts in seconds; "
                 "medium overhead; portable",
    "vm": "its own kernel behind a hypervisor; starts in seconds to minutes; high overhead; "
          "the strongest barrier",
}

# a sandbox's network is declared, never a default: said where an agent likely needs it
NO_NETWORK = ("a sandbox has no network unless it declares one (network: none is the default "
              "for every class); if it talks to the network, add network: host, or "
              "network: loopback:NAME to share a loopback with chosen agents only")

# What stands between an agent and the rest at each level (ownership.identity, host.bwrap):
# what a demanding user must know before trusting an agent with a level.
BOUNDARY = {
    "process": "no wall: without user: it runs as corral's own user and can read its "
               "neighbours' environments (/proc/PID/environ) and secret files and drive the "
               "fleet through the daemon's socket; with user: NAME the kernel's per-user "
               "rules keep those closed, but it still sees every file that user may read",
    "venv": "as process (a venv separates packages, not agents)",
    "sandbox": "namespaces on the host kernel: its own view of files, processes and network; "
               "run by root it is an unprivileged uid of its own (no capability), so host "
               "files closed to other users stay closed; a kernel exploit crosses it",
    "container": "namespaces and the engine's confinement on the host kernel; a kernel "
                 "exploit crosses it",
    "vm": "its own kernel behind a hypervisor: the wall holds against a kernel exploit",
}

CLOUD_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "GCP_", "ARM_CLIENT", "DIGITALOCEAN_")


@dataclass(frozen=True, slots=True)
class AgentFacts:
    name: str
    agent_class: str  # compute | io | service | ai
    isolation: str
    trust: str = "trusted"  # trusted | untrusted
    python_deps: bool = False  # a requirements.txt / pyproject.toml of its own
    system_packages: tuple[str, ...] = ()  # OS packages or shared libraries it needs
    os: str | None = None  # another OS or distribution, e.g. "centos:7"
    kernel: bool = False  # kernel modules, a custom kernel, eBPF
    gpu: bool = False
    exposed: bool = False  # reachable from outside (published ports, public endpoints)
    network: str | None = None  # none | host, where set
    credentials: tuple[str, ...] = ()  # names of the secrets/env it holds
    user: str | None = None  # user: (process, venv, sandbox)


@dataclass(frozen=True, slots=True)
class Advice:
    agent: str
    level: str
    reasons: tuple[str, ...]
    current: str
    notes: tuple[str, ...] = ()

    @property
    def differs(self) -> bool:
        return self.level != self.current


@dataclass(frozen=True, slots=True)
class LevelCost:
    level: str
    available: bool
    start_ms: float | None = None  # median time to run `true` at this level, here
    detail: str = ""


def cloud_credentials(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(n for n in names if n.upper().startswith(CLOUD_PREFIXES))


def _best(wanted: Sequence[str], available: set[str]) -> tuple[str, str | None]:
    """The first of ``wanted`` this host supports, and a note when it is not the first."""
    for level in wanted:
        if level in available:
            note = None if level == wanted[0] else (
                f"{wanted[0]} would fit better, but this host cannot run it "
                f"(see 'corral doctor'); {level} is the strongest level available")
            return level, note
    return wanted[0], f"none of {', '.join(wanted)} works on this host (see 'corral doctor')"


def recommend(facts: AgentFacts, available: set[str]) -> Advice:
    reasons: list[str] = []
    wanted: list[str] | None = None

    def rule(applies: bool, levels: list[str], why: str) -> None:
        nonlocal wanted
        if applies:
            reasons.append(why)
            if wanted is None:
                wanted = levels

    rule(facts.kernel, ["vm"], "it needs kernel features or modules of its own: containers "
         "and sandboxes share the host's kernel")
    rule(facts.os is not None and not (facts.os or "").startswith("linux"),
         ["container", "vm"] if _is_linux_distro(facts.os) else ["vm"],
         f"it needs {facts.os}: another distribution runs in a container image, another OS "
         "only in a VM")
    rule(facts.trust == "untrusted", ["vm", "container", "sandbox"],
         "it is untrusted: a kernel exploit from a container reaches the host, so the "
         "strongest barrier available")
    rule(bool(facts.system_packages), ["container"],
         f"it needs system packages ({', '.join(facts.system_packages)}): they travel in its "
         "image instead of being installed on the host")
    rule(facts.agent_class == "ai", ["container", "sandbox"],
         "an LLM agent runs tools it chose itself: confine what they can read, write and reach")
    risky = facts.exposed and bool(cloud_credentials(facts.credentials))
    rule(risky, ["sandbox", "container"],
         "it is reachable from outside and holds cloud credentials: a compromise must not "
         "reach the user's files or other agents")
    rule(facts.exposed, ["sandbox", "container"],
         "it is reachable from outside: keep a compromise inside its own view of the system")
    rule(facts.python_deps, ["venv"],
         "it has Python dependencies of its own: a venv keeps them from clashing with "
         "other agents' versions")
    rule(not reasons, ["process"],
         "nothing it needs calls for more than its own working directory")
    assert wanted is not None
    level, note = _best(wanted, available)
    notes = [note] if note else []
    if facts.gpu:
        notes.append("it needs a GPU: process, venv and container levels pass devices "
                     "through; a VM needs VFIO passthrough")
    if level == "sandbox" and facts.network not in ("host", "joined") and not (
            facts.network or "").startswith("loopback:") and facts.agent_class in ("io",
                                                                                  "service"):
        notes.append(NO_NETWORK)
    if level in ("process", "venv") and facts.user is None:
        notes.append(f"at {level} level it runs as corral's own user: nothing keeps it from "
                     "its neighbours' secrets nor from the daemon's socket; give it a user: "
                     "of its own (corral running as root), or a sandbox")
    if level in ("sandbox", "container") and facts.python_deps:
        notes.append("its requirements file builds the same environment at this level")
    return Advice(facts.name, level, tuple(reasons), facts.isolation, tuple(notes))


def _is_linux_distro(name: str | None) -> bool:
    distros = ("centos", "rhel", "rocky", "alma", "debian", "ubuntu", "alpine", "fedora",
               "amazonlinux", "opensuse", "arch")
    return bool(name) and any((name or "").lower().startswith(d) for d in distros)


def warnings(facts: AgentFacts) -> list[str]:
    """Risky choices already made in the manifest (printed once by ``corral up``)."""
    out = []
    weak = STRENGTH.get(facts.isolation, 0) <= STRENGTH["venv"]
    creds = cloud_credentials(facts.credentials)
    if facts.trust == "untrusted" and weak:
        out.append(f"{facts.name}: untrusted agent at {facts.isolation} level can read your "
                   "files and credentials; use isolation: sandbox, container or vm")
    if facts.exposed and creds and weak:
        out.append(f"{facts.name}: reachable from outside and holding {', '.join(creds)} at "
                   f"{facts.isolation} level; use isolation: sandbox or container")
    if facts.isolation == "sandbox" and facts.network is None and facts.agent_class in (
            "io", "service"):
        out.append(f"{facts.name}: {NO_NETWORK}")
    if facts.agent_class == "ai" and weak:
        out.append(f"{facts.name}: an ai agent at {facts.isolation} level runs its tools with "
                   "your rights; use isolation: sandbox or container")
    return out


# --- measuring the levels on this host ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    level: str
    argv: list[str] | None  # how to run `true` at this level; None: not available
    detail: str = ""
    env: Mapping[str, str] = field(default_factory=dict)


def measure(probe: Probe, runs: int = 5,
            timer: Callable[[], float] = time.perf_counter) -> LevelCost:
    if probe.argv is None:
        return LevelCost(probe.level, False, None, probe.detail)
    times = []
    for _ in range(runs):
        t0 = timer()
        try:
            proc = subprocess.run(probe.argv, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  timeout=120, env={**os.environ, **probe.env})
        except (OSError, subprocess.TimeoutExpired) as exc:
            return LevelCost(probe.level, False, None, f"cannot run: {exc}")
        if proc.returncode != 0:
            tail = (proc.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
            return LevelCost(probe.level, False, None, f"failed: {tail[:160]}")
        times.append((timer() - t0) * 1000)
    return LevelCost(probe.level, True, statistics.median(times), probe.detail)
