"""Rootless Podman: what a non-root user's engine cannot do on this host, said before a
container is created rather than discovered after.

Podman run by a user other than root is rootless: its containers live in that user's storage
and user namespace. Two things then depend on the host, and Podman itself either ignores the
problem or reports it misleadingly:

* Resource limits. On cgroup v1 (or a hybrid host, which Podman treats as v1) a rootless
  container gets no cgroup of its own, and Podman drops ``--memory``, ``--cpus`` and
  ``--pids-limit`` with a warning nobody reads (its API not even that): the agent would run
  unlimited. On cgroup v2 they are applied where the controllers are delegated to the user.
* Networks. A rootless network (the project's bridge, or Podman's default) needs
  ``slirp4netns``, which opens ``/dev/net/tun``. Where the user may not open it, the first
  start fails ("open /dev/net/tun: Permission denied") and leaves a half-made network
  namespace behind, so every later start fails with "failed to mount runtime directory for
  rootless netns" even after the device is fixed.

``refusal`` turns either into the agent's one-line start error with its fix. An unset
``XDG_RUNTIME_DIR`` (what ``su`` gives) needs nothing from corral: Podman falls back to
``/tmp/podman-run-UID``, and corral's own Podman service lives under ``$TMPDIR/corral-UID``.
One set to a dir of another user's (``su`` without ``-`` keeps root's) makes every Podman
command fail: that is refused too, naming the variable.
"""

from __future__ import annotations

import os

from corral.drivers.base import Task
from corral.drivers.container.engine import Engine
from corral.errors import DriverError

TUN = "/dev/net/tun"
_LIMITS_FIX = ("run corral as root, or use a cgroup v2 host with the memory, cpu and pids "
               "controllers delegated to the user")


def podman_rootless(engine: Engine) -> bool:
    """Whether ``engine`` is a rootless Podman run from here: a local one (no
    ``CONTAINER_HOST``/``CONTAINER_CONNECTION`` naming another) by a user other than root."""
    if engine.name != "podman" or os.geteuid() == 0:
        return False
    return not (os.environ.get("CONTAINER_HOST") or os.environ.get("CONTAINER_CONNECTION"))


def cgroup_v2(mounts: str = "/proc/self/mounts") -> bool:
    """Whether ``/sys/fs/cgroup`` is the unified (v2) hierarchy; a hybrid host is not."""
    try:
        with open(mounts, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 2 and fields[1] == "/sys/fs/cgroup":
                    return fields[2] == "cgroup2"
    except OSError:
        pass
    return False


def tun_usable(path: str = TUN) -> bool:
    """Whether this user may open the tun device (slirp4netns does; opening it alone makes
    no interface)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def limits_named(cpus: float | None, memory: int | None, memory_reservation: int | None,
                 pids: int | None) -> list[str]:
    named = [("cpus", cpus), ("memory", memory), ("memory_reservation", memory_reservation),
             ("pids", pids)]
    return [n for n, v in named if v is not None]


def limits_problem(limits: list[str], *, v2: bool | None = None) -> tuple[str, str] | None:
    """``(problem, fix)`` when rootless Podman cannot apply ``limits`` here."""
    if not limits or (cgroup_v2() if v2 is None else v2):
        return None
    return (f"rootless Podman on cgroup v1 cannot apply resource limits "
            f"({', '.join(limits)}); the agent would run unlimited", _LIMITS_FIX)


def network_problem(network: str, *, tun: bool | None = None) -> tuple[str, str] | None:
    """``(problem, fix)`` when rootless Podman cannot give a container ``network`` here."""
    if network in ("none", "host") or (tun_usable() if tun is None else tun):
        return None
    return (f"rootless Podman cannot give containers a network here: {TUN} is not open to uid "
            f"{os.geteuid()} (slirp4netns needs it)",
            f"chmod 0666 {TUN} (its usual mode), run corral as root, or set the agent's "
            "network: none (or host)")


def runtime_dir_problem() -> tuple[str, str] | None:
    """``(problem, fix)`` when ``XDG_RUNTIME_DIR`` names a dir this user does not own
    (Podman refuses it; a missing one it replaces with its own)."""
    path = os.environ.get("XDG_RUNTIME_DIR")
    try:
        owner = os.stat(path).st_uid if path else os.geteuid()
    except OSError:
        return None
    if owner == os.geteuid():
        return None
    return (f"XDG_RUNTIME_DIR={path} is not this user's (uid {os.geteuid()}): rootless "
            "Podman refuses it",
            f"unset XDG_RUNTIME_DIR (Podman then uses /tmp/podman-run-{os.geteuid()}) or "
            "log in as the user (su - USER)")


def refusal(engine: Engine, *, network: str, limits: list[str]) -> tuple[str, str] | None:
    """Why ``engine`` cannot run this container as asked, with the fix; None when it can."""
    if not podman_rootless(engine):
        return None
    return runtime_dir_problem() or limits_problem(limits) or network_problem(network)


def refuse(task: Task, engine: Engine) -> None:
    """Raise ``refusal`` as the agent's start error (checked before its image is built)."""
    res = task.spec.resources
    limits = limits_named(res.cpus, res.memory, res.memory_reservation, res.pids)
    refused = refusal(engine, network=task.spec.network or "bridge", limits=limits)
    if refused is not None:
        raise DriverError(f"agents.{task.agent}: {refused[0]}", refused[1])


def doctor_rows(engine: Engine) -> list[tuple[str, bool, str, str]]:
    """``corral doctor``'s rows for a rootless Podman: that it is, whether limits are
    enforced, whether networks work."""
    if not podman_rootless(engine):
        return []
    uid = os.geteuid()
    v2 = cgroup_v2()
    rows = [("podman", True, f"rootless (uid {uid}): containers in this user's storage", "")]
    if v2:
        rows.append(("podman", True, "rootless on cgroup v2: resource limits are applied "
                     "where the controllers are delegated to the user", ""))
    else:
        rows.append(("podman", False, "rootless on cgroup v1: resource limits cannot be "
                     "enforced (an agent with resources: is refused)", _LIMITS_FIX))
    for problem in (network_problem("bridge"), runtime_dir_problem()):
        if problem is not None:
            rows.append(("podman", False, problem[0], problem[1]))
    return rows
