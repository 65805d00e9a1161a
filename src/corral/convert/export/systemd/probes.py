"""Readiness probes as the command an ``ExecStartPost=`` runs: it returns once the probe has
passed ``success_threshold`` times in a row, so systemd holds the unit in "activating" until
then and ``After=`` on it means "after it is ready" (health gating without a helper daemon).
The probe is a short ``python3 -c`` program (Python is what corral itself needs, so it is on
any host corral ran on); it keeps trying every ``period`` seconds, each try bounded by
``timeout``, after ``initial_delay``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral.convert.export.systemd.quoting import command

if TYPE_CHECKING:
    from corral.convert.report import Report
    from corral.manifest.spec import Agent, Probe

PYTHON = "/usr/bin/python3"

# argv: kind delay period timeout successes kind-args...
WAITER = """\
import os, re, socket, subprocess, sys, time, urllib.request
kind, delay, period, timeout, need = sys.argv[1], *map(float, sys.argv[2:5]), int(sys.argv[5])
a = sys.argv[6:]
def once():
    if kind == "tcp":
        socket.create_connection((a[0], int(a[1])), timeout).close(); return True
    if kind == "http":
        try: code = urllib.request.urlopen(a[0], timeout=timeout).status
        except urllib.error.HTTPError as e: code = e.code
        return str(code) in a[1].split(",")
    if kind == "exec":
        return subprocess.run(a, timeout=timeout, cwd=os.getcwd()).returncode == 0
    if kind == "heartbeat":
        return time.time() - os.stat(a[0]).st_mtime <= float(a[1])
    if kind == "log":
        out = subprocess.run(["journalctl", "-q", "-o", "cat", "_SYSTEMD_INVOCATION_ID="
            + os.environ["INVOCATION_ID"]], capture_output=True, text=True, timeout=timeout)
        return re.search(a[0], out.stdout, re.M) is not None
    raise SystemExit("unknown probe " + kind)
time.sleep(delay)
ok = 0
while ok < need:
    try: ok = ok + 1 if once() else 0
    except Exception: ok = 0
    if ok < need: time.sleep(period)
"""


def _args(agent: str, spec: Agent, probe: Probe, report: Report) -> list[str] | None:
    if probe.tcp is not None:
        return ["tcp", probe.tcp.host, str(probe.tcp.port)]
    if probe.http is not None:
        h = probe.http
        return ["http", f"{h.scheme}://{h.host}:{h.port}{h.path}",
                ",".join(str(s) for s in h.status)]
    if probe.exec is not None:
        return ["exec", *probe.exec.command]
    if probe.log_line is not None:
        return ["log", probe.log_line.pattern]
    if probe.heartbeat is not None:
        import os

        return ["heartbeat", os.path.join(spec.workdir, probe.heartbeat),
                str(probe.heartbeat_within)]
    report.dropped(agent, "readiness.silence", "a unit cannot see how long its output has "
                   "been quiet; the agent counts as ready once started")
    return None


def ready_wait(agent: str, spec: Agent, report: Report) -> str | None:
    """The ``ExecStartPost=`` line that waits for readiness, None without a probe."""
    from corral.manifest.spec import LogLineCheck, Probe

    probe = spec.readiness
    if probe is None and spec.ready_log_line is not None:
        probe = Probe(log_line=LogLineCheck(pattern=spec.ready_log_line), period=1.0)
    if probe is None:
        return None
    args = _args(agent, spec, probe, report)
    if args is None:
        return None
    if probe.action not in (None, "none"):
        report.dropped(agent, "readiness.action", f"{probe.action} on a failed readiness "
                       "probe after start: the unit only waits for the first pass")
    report.changed(agent, "readiness", "waited for at start only (ExecStartPost=), not "
                   "watched after: failure_threshold has no effect")
    head = [PYTHON, "-c", WAITER, args[0], str(probe.initial_delay), str(probe.period),
            str(probe.timeout), str(probe.success_threshold)]
    return command(head + args[1:])


def liveness(agent: str, spec: Agent, report: Report) -> None:
    """systemd's one liveness check is the watchdog (``WatchdogSec=``), which needs the agent
    to call ``sd_notify``; corral's probes look from outside, so none is carried."""
    if spec.liveness is not None:
        report.dropped(agent, "liveness", "systemd has no outside liveness probe (its "
                       "WatchdogSec= needs the agent to send sd_notify); Restart= covers "
                       "exits only")
