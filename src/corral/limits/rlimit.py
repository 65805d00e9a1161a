"""The fallback where no cgroup is writable: rlimits, set by the agent's own shell before exec.

rlimits are per process (inherited by children), not per group, so they are weaker:
``RLIMIT_AS`` caps each process's address space (virtual memory, not resident memory: a
program that maps much more than it touches may fail early), ``RLIMIT_NPROC`` counts all
processes of the user, and the kernel does not apply it to root. ``RLIMIT_CPU`` is a budget of
CPU seconds, not a rate: ``cpus: 0.5`` cannot be expressed, so it is refused with a fix.
Nothing here can find or kill a detached descendant: the driver's /proc marker scan does that.
"""

from __future__ import annotations

from corral.errors import CorralError
from corral.manifest.spec import Resources

LABEL = "rlimit (no writable cgroup)"


def shell_lines(res: Resources, where: str) -> list[str]:
    """``ulimit`` lines for the wrapper shell; a limit rlimits cannot express is an error."""
    fix = ("run the daemon where it can write a cgroup (as root, or in a delegated cgroup), "
           "or remove it")
    if res.cpus is not None:
        raise CorralError(f"{where}.cpus: no writable cgroup here, and rlimits cannot cap a CPU "
                          "rate (RLIMIT_CPU is a total of seconds)", fix)
    for name in ("memory_reservation", "memory_high"):
        if getattr(res, name) is not None:
            raise CorralError(f"{where}.{name}: no writable cgroup here, and rlimits have no "
                              "such limit", fix)
    lines = []
    if res.memory is not None:
        lines.append(f"ulimit -v {max(1, res.memory // 1024)}")  # RLIMIT_AS, in KiB
    if res.pids is not None:
        lines.append(f"ulimit -p {res.pids}")  # RLIMIT_NPROC
    return lines
