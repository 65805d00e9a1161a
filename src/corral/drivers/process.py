"""The ``process`` isolation level: a plain child process in its own session and workdir.

A recipe for the shared host launcher (``drivers.host.launcher``: named pipes that survive a
daemon kill, pidfd exit, the instance's cgroup joined by a shell, re-adoption; the stop of
``drivers.host.stop``): the agent's own command, its environment as the task has it, its
``resources`` as the group's limits, run as corral or as its ``user:`` (``drivers.host.runas``).
"""

from __future__ import annotations

from typing import ClassVar

from corral.drivers.base import Capabilities
from corral.drivers.host.hosted import HostedDriver


class ProcessDriver(HostedDriver):
    """The recipe's defaults, as they are (``drivers.host.hosted``)."""

    name: ClassVar[str] = "process"
    capabilities: ClassVar[Capabilities] = Capabilities(
        isolation="process", recover=True, stats=True, signals=True
    )
