"""The range of every number in a manifest, in one table both sides of the socket read.

``memory: 99999999999999999999G``, ``cpus: 1e308`` and ``stop.timeout: 99999999999999999999h``
were accepted, and would have reached cgroup files, ``float`` arithmetic (``factor ** n``
overflows) and timers as nonsense. Each number's field says its range once, as a
``rules.Within`` marker (``spec.py``'s named types: ``Port``, ``Threshold``...; the drivers'
records on their own fields), which both sides read: pydantic in the CLI (and so ``corral
schema``), and the daemon's decoder (``decode.py``), since what ``/v1/apply`` gets never went
through the CLI. This module holds the limits and the ``Range`` the markers carry.

Stdlib only: the daemon imports it.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

MAX_REPLICAS = 10_000
MAX_CPUS = 4096  # the kernel's NR_CPUS ceiling on x86_64 distributions' kernels
MAX_SIZE = 1 << 50  # 1 PiB, for memory and log sizes
MAX_PIDS = 4_194_304  # the kernel's PID_MAX_LIMIT
MAX_GPUS = 1024  # per instance: past any machine's count
MAX_DURATION = 365 * 86400.0  # a year, for every duration
MAX_THRESHOLD = 1000  # probe successes/failures in a row
MAX_RESTARTS = 10_000
MAX_FACTOR = 100.0  # backoff growth per restart
MAX_KEEP = 1000  # rotated log files
PORT_MAX = 65535
# shapes the shortcuts (normalize) check too, which must not import the spec they serve
USER = r"^([0-9]{1,10}|[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?)$"  # a uid or a user name
PROBE_KINDS = ("exec", "http", "tcp", "log_line", "silence", "heartbeat")
WITHIN_ALONE = "within goes with heartbeat: FILE (the file's greatest age); remove it"


class Range(NamedTuple):
    low: float
    high: float
    low_open: bool = False  # cpus: above 0, not 0

    def problem(self, value: float) -> str | None:
        """Why ``value`` is outside, naming the bound; None when inside."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value} is not a finite number"
        if self.low_open and value <= self.low:
            return f"{_num(value)} is out of range: it must be above {_num(self.low)}"
        if value < self.low:
            return f"{_num(value)} is out of range: at least {_num(self.low)}"
        if value > self.high:
            return f"{_num(value)} is out of range: at most {_num(self.high)}"
        return None


def _num(value: float) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else f"{value:g}"
    return str(value)


DURATION = Range(0, MAX_DURATION)
SIZE = Range(0, MAX_SIZE)
PORT = Range(1, PORT_MAX)
# published ports: "8080" or "18080:80" (host:inside); the drivers' records name it
# (``rules.PortMapping``)
_PORT_MAPPING = re.compile(r"(\d{1,5})(?::(\d{1,5}))?")


def port_mapping_problem(text: str) -> str | None:
    match = _PORT_MAPPING.fullmatch(text)
    if not match:
        return f"{text[:40]!r} is not a port mapping: write PORT or HOST:INSIDE, e.g. 18080:80"
    for port in match.groups():
        if port is not None and not 1 <= int(port) <= PORT_MAX:
            return f"port {int(port)} in {text!r} is out of range: ports are 1 to {PORT_MAX}"
    return None
