"""corral's probes as Kubernetes probes, every threshold carried. Kubernetes counts in whole
seconds (a period of at least 1) and knows exec, httpGet and tcpSocket; corral's heartbeat
(a file's age) becomes an exec probe that compares the file's mtime with the clock, and its
``silence`` and ``log_line`` probes, which read the agent's output, have no equivalent."""

from __future__ import annotations

import math
import shlex
from typing import TYPE_CHECKING, Any

from corral.convert.report import Report

if TYPE_CHECKING:
    from corral.manifest.spec import Probe

DEFAULT_STATUS = list(range(200, 400))
LOCAL = ("127.0.0.1", "localhost", "::1")


def _seconds(value: float, least: int, agent: str, path: str, report: Report) -> int:
    whole = max(least, math.ceil(value))
    if whole != value:
        report.changed(agent, path, f"{value:g}s is {whole}s (Kubernetes counts whole "
                       f"seconds{', at least 1' if least else ''})")
    return whole


def heartbeat_command(path: str, within: float) -> list[str]:
    """Fails when the file is missing or older than ``within`` seconds (relative paths from
    the container's working directory, as the agent's workdir; needs sh, date and stat)."""
    limit = math.ceil(within)
    quoted = shlex.quote(path)
    return ["/bin/sh", "-c",
            f"test $(( $(date +%s) - $(stat -c %Y {quoted}) )) -le {limit}"]


def probe(agent: str, role: str, spec: Probe, report: Report) -> dict[str, Any] | None:
    """The probe for ``role`` (readiness, liveness), None when its kind has no equivalent."""
    kind = spec.kind
    out: dict[str, Any]
    if kind == "exec":
        assert spec.exec is not None
        out = {"exec": {"command": list(spec.exec.command)}}
    elif kind == "http":
        assert spec.http is not None
        h = spec.http
        out = {"httpGet": {"path": h.path, "port": h.port, "scheme": h.scheme.upper()}}
        _local(agent, f"{role}.http.host", h.host, report)
        if sorted(h.status) != DEFAULT_STATUS:
            report.changed(agent, f"{role}.http.status", "Kubernetes counts 200-399 as "
                           "success, whatever the status list says")
    elif kind == "tcp":
        assert spec.tcp is not None
        out = {"tcpSocket": {"port": spec.tcp.port}}
        _local(agent, f"{role}.tcp.host", spec.tcp.host, report)
    elif kind == "heartbeat":
        assert spec.heartbeat is not None
        out = {"exec": {"command": heartbeat_command(spec.heartbeat, spec.heartbeat_within)}}
        report.changed(agent, f"{role}.heartbeat", "an exec probe on the file's age (needs "
                       "/bin/sh, date and stat in the image)")
        if spec.heartbeat_within != math.ceil(spec.heartbeat_within):
            report.changed(agent, f"{role}.within", "rounded up to whole seconds")
    else:
        report.dropped(agent, f"{role}.{kind}", f"a {kind} probe reads the agent's output, "
                       "which Kubernetes probes cannot see")
        return None
    out["initialDelaySeconds"] = _seconds(spec.initial_delay, 0, agent,
                                          f"{role}.initial_delay", report)
    out["periodSeconds"] = _seconds(spec.period, 1, agent, f"{role}.period", report)
    out["timeoutSeconds"] = _seconds(spec.timeout, 1, agent, f"{role}.timeout", report)
    success = spec.success_threshold
    if role == "liveness" and success != 1:
        report.changed(agent, "liveness.success_threshold", "Kubernetes requires 1 for a "
                       "liveness probe")
        success = 1
    out["successThreshold"] = success
    out["failureThreshold"] = spec.failure_threshold
    _action(agent, role, spec.action, report)
    return out


def _local(agent: str, path: str, host: str, report: Report) -> None:
    if host in LOCAL:
        report.changed(agent, path, "the kubelet probes the pod's IP, not 127.0.0.1: the "
                       "agent must listen on all addresses (0.0.0.0)")
    else:
        report.dropped(agent, path, f"the kubelet probes the pod's own IP, not {host}")


def _action(agent: str, role: str, action: str | None, report: Report) -> None:
    if action is None:
        return
    if role == "liveness" and action != "restart":
        report.changed(agent, "liveness.action", f"{action}: Kubernetes restarts the "
                       "container when a liveness probe fails (as restart)")
    if role == "readiness" and action != "none":
        report.changed(agent, "readiness.action", f"{action}: a failed Kubernetes readiness "
                       "probe only takes the pod out of its Service (as none)")
