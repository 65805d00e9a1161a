"""One agent's template unit ``PROJECT-AGENT@.service``: instance ``%i`` is the instance's
index, so ``CORRAL_INSTANCE``/``CORRAL_INSTANCE_INDEX`` come from ``%i`` and one file serves
every replica. Ordering: ``After=`` plus ``Requires=`` (``Wants=`` when not required) on each
instance of a dependency; a dependency with a readiness probe blocks in ``ExecStartPost=``
until ready (``probes``), so ``After=`` on it waits for health; a dependency others wait on to
complete is ``Type=oneshot`` with ``RemainAfterExit=yes``, so it counts as started once it
exited 0."""

from __future__ import annotations

import math
import os
import re
from typing import TYPE_CHECKING

from corral.convert.export.systemd import isolation, probes
from corral.convert.export.systemd.quoting import assignment, command, specifiers

if TYPE_CHECKING:
    from corral.convert.report import Report
    from corral.manifest.spec import Agent, Manifest

RESTART = {"no": "no", "on-failure": "on-failure", "always": "always",
           "unless-stopped": "always"}
STEPS_SINCE = 254
HOST_FACTS = ("HOME", "LOGNAME", "USER", "SHELL", "PATH")  # RestartSteps=, RestartMaxDelaySec=


def unit_name(project: str, agent: str, instance: str = "") -> str:
    return f"{project}-{agent}@{instance}.service"


def instances(manifest: Manifest, agent: str) -> list[str]:
    return [unit_name(manifest.name, agent, str(i))
            for i in range(1, manifest.agents[agent].replicas + 1)]


def awaited_to_complete(manifest: Manifest, name: str) -> bool:
    return any(dep.condition.startswith("completed")
               for a in manifest.agents.values() for n, dep in a.depends_on.items()
               if n == name)


def _ordering(manifest: Manifest, name: str, agent: Agent, report: Report) -> list[str]:
    lines = []
    for dep_name, dep in agent.depends_on.items():
        if dep_name not in manifest.agents:
            report.dropped(name, f"depends_on.{dep_name}", "no such agent in the fleet")
            continue
        units = instances(manifest, dep_name)
        if manifest.agents[dep_name].schedule is not None:
            report.changed(name, f"depends_on.{dep_name}", "a scheduled dependency: ordered "
                           "after its run if one is going, not waited for")
            lines.append("After=" + " ".join(units))
            continue
        strong = dep.required and dep.condition != "completed"
        lines += ["After=" + " ".join(units),
                  ("Requires=" if strong else "Wants=") + " ".join(units)]
        if dep.restart:
            lines.append("PartOf=" + " ".join(units))
            report.changed(name, f"depends_on.{dep_name}.restart", "PartOf=: restarted "
                           "when the dependency is stopped or restarted by systemctl, not "
                           "when systemd restarts it after a crash")
        if dep.condition == "started" and (manifest.agents[dep_name].readiness is not None):
            report.changed(name, f"depends_on.{dep_name}.condition", "started waits for the "
                           "dependency's readiness too (its ExecStartPost= waits for it)")
        if dep.condition == "completed":
            report.changed(name, f"depends_on.{dep_name}.condition", "completed: Wants= and "
                           "After= a oneshot, so it starts after the run ends, however it ends")
    return lines


def _restart(name: str, agent: Agent, version: int, oneshot: bool,
             report: Report) -> tuple[list[str], list[str]]:
    """``Restart=`` and its delays for [Service]; the start limit for [Unit]."""
    r = agent.restart
    policy = RESTART[r.policy]
    if oneshot and policy == "always":
        policy = "on-failure"
        report.changed(name, "restart.policy", "a oneshot cannot be Restart=always: "
                       "on-failure")
    if r.policy == "unless-stopped":
        report.changed(name, "restart.policy", "unless-stopped is Restart=always: a unit "
                       "stopped with systemctl stays stopped until the next boot or start")
    b = r.backoff
    lines = [f"Restart={policy}", f"RestartSec={b.initial:g}s"]
    if b.max > b.initial and b.factor > 1:
        if version >= STEPS_SINCE:
            steps = max(1, math.ceil(math.log(b.max / b.initial, b.factor)))
            lines += [f"RestartSteps={steps}", f"RestartMaxDelaySec={b.max:g}s"]
            report.changed(name, "restart.backoff.factor", f"systemd grows the delay from "
                           f"RestartSec= to RestartMaxDelaySec= in {steps} steps of its own "
                           "curve, not by the factor")
        else:
            report.dropped(name, "restart.backoff", f"systemd {version} has no "
                           f"RestartSteps=/RestartMaxDelaySec= (254+): every restart waits "
                           f"{b.initial:g}s (set --set systemd-version=254 for newer hosts)")
    report.changed(name, "restart.backoff.reset_after", "systemd resets its restart "
                   "count only through the start limit interval")
    if r.max_restarts is None:
        limit = ["StartLimitIntervalSec=0"]
    else:
        limit = [f"StartLimitIntervalSec={r.window:g}s",
                 f"StartLimitBurst={r.max_restarts + 1}"]
        report.changed(name, "restart.max_restarts", "StartLimitBurst= counts starts, so "
                       "it is max_restarts + 1 within the window")
    return limit, lines


def _resources(name: str, agent: Agent, report: Report) -> list[str]:
    res, lines = agent.resources, []
    if res.gpus:
        report.dropped(name, "resources.gpus", "systemd reserves no GPUs: the unit sees the "
                       "host's devices")
    if res.cpus is not None:
        lines.append(f"CPUQuota={round(res.cpus * 100)}%")
    for key, value in (("MemoryMax", res.memory), ("MemoryLow", res.memory_reservation),
                       ("MemoryHigh", res.memory_high), ("TasksMax", res.pids)):
        if value is not None:
            lines.append(f"{key}={value}")
    return lines


_UNIT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _unit_env(manifest: Manifest, name: str) -> dict[str, str]:
    from corral.convert import fleet

    env = fleet.environment(manifest, name)
    for host_fact in HOST_FACTS:  # this shell's; systemd sets its own (and User='s)
        env.pop(host_fact, None)
    return env


def _environment(name: str, agent: Agent, env: dict[str, str], report: Report) -> list[str]:
    lines = [f'Environment="CORRAL_INSTANCE={name}.%i" "CORRAL_INSTANCE_INDEX=%i"']
    lines += [f"Environment={assignment(k, v)}" for k, v in sorted(env.items())
              if _UNIT_NAME.fullmatch(k)]
    for f in agent.env_file:
        lines.append(f"EnvironmentFile={'' if f.required else '-'}{specifiers(f.path)}")
    if agent.env_file:
        report.changed(name, "env_file", "EnvironmentFile= reads the files at each start "
                       "(their values at export are also in Environment=; the file wins)")
    if agent.inherit_env:
        report.dropped(name, "inherit_env", "a unit starts with systemd's environment, not "
                       "the shell's that ran corral up")
    return lines


def _odd_names(name: str, env: dict[str, str], report: Report) -> list[str]:
    """Variables whose names systemd refuses in ``Environment=`` (``discovery.type``, as
    Elasticsearch reads): set by ``env`` in ``ExecStart=`` instead."""
    odd = {k: v for k, v in env.items() if not _UNIT_NAME.fullmatch(k)}
    for k in sorted(odd):
        report.changed(name, f"env.{k}", "set by env(1) in ExecStart=: systemd takes only "
                       "letters, digits and '_' in Environment= names")
    return ["/usr/bin/env", *(f"{k}={v}" for k, v in sorted(odd.items()))] if odd else []


def _stop(agent: Agent) -> list[str]:
    return [f"KillSignal={agent.stop.signal}", f"TimeoutStopSec={agent.stop.timeout:g}s"]


def render(manifest: Manifest, name: str, version: int, secrets: list[str],
           wrap: list[str], report: Report) -> str:
    """The unit's text; ``secrets``: its credential lines; ``wrap``: the argv prefix that
    puts env-style secrets into variables (``secrets``)."""
    agent = manifest.agents[name]
    oneshot = agent.schedule is not None or awaited_to_complete(manifest, name)
    unit = [f"Description={manifest.name} {name} (instance %i)"
            + (f": {specifiers(agent.description)}" if agent.description else ""),
            f"PartOf={manifest.name}.target", *_ordering(manifest, name, agent, report)]
    svc = ["Type=oneshot" if oneshot else "Type=exec"]
    if oneshot and agent.schedule is None:
        svc.append("RemainAfterExit=yes")
    svc.append(f"WorkingDirectory={specifiers(agent.workdir)}")
    if agent.user is not None:
        svc.append(f"User={agent.user}")
    env = _unit_env(manifest, name)
    svc += _environment(name, agent, env, report) + secrets
    wrap = _odd_names(name, env, report) + wrap
    if agent.isolation == "venv":
        svc += isolation.venv_lines(manifest, name, agent, report)
    elif agent.isolation == "sandbox":
        walls = isolation.sandbox_lines(manifest, name, agent, report)
        unit += [w for w in walls if w.startswith("JoinsNamespaceOf=")]  # a [Unit] setting
        svc += [w for w in walls if not w.startswith("JoinsNamespaceOf=")]
    elif agent.isolation == "vm":
        report.dropped(name, "isolation", "vm: systemd runs no guest; the unit runs the "
                       "command as a host process")
    elif agent.isolation not in ("process", "container"):
        report.dropped(name, "isolation", f"{agent.isolation}: no systemd form; run as a "
                       "host process")
    if agent.isolation == "container":
        argv = isolation.container_argv(manifest, name, agent, report)
        svc.append("ExecStart=" + " ".join(filter(None, (
            command(wrap), command(argv[:6], expand=True), command(argv[6:])))))
    else:
        svc.append("ExecStart=" + command(wrap + isolation.exec_argv(agent)))
        svc += _volumes(manifest, name, agent)
    wait = probes.ready_wait(name, agent, report)
    if wait is not None:
        svc += [f"ExecStartPost={wait}", "TimeoutStartSec=infinity"]
    probes.liveness(name, agent, report)
    limit, restart = _restart(name, agent, version, oneshot, report)
    unit += limit
    svc += restart + _stop(agent) + _resources(name, agent, report)
    if oneshot and agent.schedule is None and agent.restart.policy != "no":
        report.changed(name, "restart", "a oneshot others wait to complete: restarted on "
                       "failure only")
    text = ["[Unit]", *unit, "", "[Service]", *svc, ""]
    return "\n".join(text) + "\n"


def _volumes(manifest: Manifest, name: str, agent: Agent) -> list[str]:
    """Named volumes in ``StateDirectory=`` (``/var/lib/PROJECT/NAME``), bound where the agent
    sees them; host paths bound when the target differs."""
    lines = []
    for v in agent.volumes:
        # a named volume's source is loaded as its path in this host's state dir
        volume = os.path.basename(v.source)
        source = f"/var/lib/{manifest.name}/{volume}" if v.named else v.source
        if v.named:
            lines.append(f"StateDirectory={manifest.name}/{volume}")
        if source != v.target:
            key = "BindReadOnlyPaths" if v.read_only else "BindPaths"
            lines.append(f"{key}={specifiers(source)}:{specifiers(v.target)}")
    return lines
