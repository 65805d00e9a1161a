"""``corral export compose``: the fleet as one ``compose.yaml``. Container agents keep their
image or build; process and venv agents are built from the Containerfile ``isolation:
container`` would generate (``convert.images``), written beside the file. What compose has no
key for goes in the report."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from corral.convert import images
from corral.convert.base import Bundle, ExportOptions
from corral.convert.report import Report
from corral.manifest.spec import LogsConfig
from corral.manifest.variables import escaped

if TYPE_CHECKING:
    from corral.manifest.spec import Agent, Manifest, Probe

CONDITIONS = {"started": "service_started", "healthy": "service_healthy",
              "completed_successfully": "service_completed_successfully"}


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _bytes(size: int | None) -> str | None:
    """compose 1.29's schema wants memory as a string: whole MiB when it is one."""
    if size is None:
        return None
    return f"{size // 2**20}M" if size % 2**20 == 0 else f"{size}b"


def _healthcheck(probe: Probe, name: str, report: Report) -> dict[str, Any] | None:
    if probe.exec is not None:
        test: list[str] = ["CMD", *probe.exec.command]
    elif probe.tcp is not None or probe.http is not None:
        check = probe.tcp or probe.http
        assert check is not None
        report.changed(name, f"readiness.{probe.kind}", "a shell check in the container "
                       "(its image needs sh)")
        test = ["CMD-SHELL", f"exec 3<>/dev/tcp/{check.host}/{check.port}"]
    else:
        report.dropped(name, f"readiness.{probe.kind}", "compose checks health by a command")
        return None
    out: dict[str, Any] = {"test": test, "interval": _seconds(probe.period),
                           "timeout": _seconds(probe.timeout),
                           "retries": probe.failure_threshold}
    if probe.initial_delay:
        out["start_period"] = _seconds(probe.initial_delay)
    if probe.success_threshold != 1:
        report.dropped(name, "readiness.success_threshold", "compose counts failures only")
    return out


def service(manifest: Manifest, name: str, options: ExportOptions, bundle: Bundle
            ) -> dict[str, Any]:
    from corral.drivers.container.options import container_options

    report = bundle.report
    agent: Agent = manifest.agents[name]
    image = images.for_agent(manifest, name, report, base=options.settings.get("base"))
    svc: dict[str, Any] = {}
    if image.built:
        assert image.context is not None
        build: dict[str, Any] = {"context": _where(image.context, options.out_dir)}
        if image.containerfile is not None:
            path = images.generated_path(name)
            bundle.files[path] = image.containerfile
            build["dockerfile"] = "__GENERATED__/" + path
        elif image.own_file is not None and os.path.basename(image.own_file) not in (
                "Containerfile", "Dockerfile"):
            build["dockerfile"] = os.path.relpath(image.own_file, image.context)
        svc["build"] = build
        svc["image"] = image.ref
    else:
        svc["image"] = image.ref
        if image.pull_policy != "missing":
            svc["pull_policy"] = image.pull_policy
    if agent.argv:  # none: the image's own command, as in compose
        svc["command"] = agent.argv
    ports = container_options(agent).ports if agent.isolation == "container" else []
    if ports:
        svc["ports"] = [f"127.0.0.1:{p}" if ":" in str(p) else f"127.0.0.1:{p}:{p}"
                        for p in map(str, ports)]
    env: dict[str, str | None] = dict(agent.env)
    for key in agent.inherit_env:  # a name without a value: compose passes it from its shell
        if any(c in key for c in "*?["):
            report.dropped(name, f"inherit_env[{key}]", "compose passes variables by name "
                           "only: list the names the glob meant")
        else:
            env.setdefault(key, None)
    if env:
        svc["environment"] = env
    if agent.env_file:
        report.changed(name, "env_file", "its values are written in environment (corral "
                       "read them when loading)")
    if agent.user:
        svc["user"] = agent.user
    if agent.replicas != 1:
        svc["scale"] = agent.replicas
    if agent.depends_on:
        deps: dict[str, Any] = {}
        for dep, d in agent.depends_on.items():
            cond = CONDITIONS.get(d.condition)
            if cond is None:
                report.changed(name, f"depends_on.{dep}.condition", f"{d.condition} is "
                               "service_started in compose")
                cond = "service_started"
            deps[dep] = {"condition": cond}
            if d.restart:
                report.dropped(name, f"depends_on.{dep}.restart", "compose 1.29 has no restart")
            if not d.required:
                report.dropped(name, f"depends_on.{dep}.required", "compose 1.29 has no "
                               "required")
        svc["depends_on"] = deps
    if agent.readiness is not None:
        check = _healthcheck(agent.readiness, name, report)
        if check:
            svc["healthcheck"] = check
    if agent.liveness is not None:
        report.dropped(name, "liveness", "compose does not restart on a failed check")
    svc["restart"] = agent.restart.policy
    if agent.restart.max_restarts is not None and agent.restart.policy == "on-failure":
        svc["restart"] = f"on-failure:{agent.restart.max_restarts}"
    report.changed(name, "restart.backoff", "the engine's own restart delay")
    svc["stop_signal"] = agent.stop.signal
    svc["stop_grace_period"] = _seconds(agent.stop.timeout)
    r = agent.resources
    limits = {k: v for k, v in (("cpus", None if r.cpus is None else f"{r.cpus:g}"),
                                ("memory", _bytes(r.memory))) if v is not None}
    reserve: dict[str, Any] = (
        {"memory": _bytes(r.memory_reservation)} if r.memory_reservation else {})
    if r.gpus:  # compose's device request: whole GPUs of the nvidia driver
        reserve["devices"] = [{"driver": "nvidia", "count": math.ceil(r.gpus),
                               "capabilities": ["gpu"]}]
        if r.gpus != math.ceil(r.gpus):
            report.changed(name, "resources.gpus", f"{r.gpus:g} rounded up to "
                           f"{math.ceil(r.gpus)}: compose reserves whole GPUs")
    if r.pids is not None:
        svc["pids_limit"] = r.pids
    if limits or reserve:
        svc["deploy"] = {"resources": {k: v for k, v in (("limits", limits),
                                                          ("reservations", reserve)) if v}}
    if r.memory_high is not None:
        report.dropped(name, "resources.memory_high", "compose has no throttle threshold")
    if agent.network in ("none", "host"):
        svc["network_mode"] = agent.network
    if agent.volumes:
        svc["volumes"] = [
            f"{os.path.basename(v.source) if v.named else _where(v.source, options.out_dir)}"
            f":{v.target}{':ro' if v.read_only else ''}" for v in agent.volumes]
    if agent.secrets:
        uses = []
        for s in agent.secrets:
            if s.env is not None:
                report.changed(name, f"secrets.{s.source}", f"a file at /run/secrets/"
                               f"{s.source}, not the variable {s.env}")
            uses.append({"source": s.source, "target": s.target} if s.target else s.source)
        svc["secrets"] = uses
    if agent.labels:
        svc["labels"] = dict(agent.labels)
    for key, what in (("schedule", agent.schedule), ("on", agent.on.fatal or agent.on.restart
                      or agent.on.oom), ("ready_log_line", agent.ready_log_line)):
        if what:
            report.dropped(name, key, "compose has no counterpart")
    _unmapped(agent, name, report)
    return svc


def _unmapped(agent: Agent, name: str, report: Report) -> None:
    """corral's own fields, named when they differ from their defaults."""
    reasons = {"description": "compose has no description (write it as a comment)",
               "class_": "corral's scheduling class has no compose key",
               "trust": "compose has no trust level",
               "needs": "advice for corral recommend only",
               "port": "the peers' addresses are in the environment already"}
    defaults: dict[str, object] = {"description": "", "class_": "io", "trust": "trusted",
                                   "port": None}
    for key, reason in reasons.items():
        value = getattr(agent, key)
        if key == "needs" and value == type(value)():
            continue
        if key in defaults and value == defaults[key]:
            continue
        report.dropped(name, key.rstrip("_"), reason)
    for block in sorted(set(agent.options) - {"container", "venv"}):
        report.dropped(name, block, f"the {block}: block belongs to its driver")


class ComposeExporter:
    name: ClassVar[str] = "compose"
    summary: ClassVar[str] = "one compose.yaml (docker compose / podman-compose)"

    def export(self, manifest: Manifest, options: ExportOptions) -> Bundle:
        bundle = Bundle(Report("export compose"))
        if manifest.metrics.port is not None:
            bundle.report.dropped(None, "metrics", "the daemon's metrics endpoint does not run "
                                  "under compose")
        if manifest.dashboard.port is not None:
            bundle.report.dropped(None, "dashboard", "the dashboard is the daemon's; none "
                                  "runs under compose")
        if manifest.logs != LogsConfig():
            bundle.report.dropped(None, "logs", "the engine's log driver keeps the logs (its "
                                  "max-size and max-file options rotate them)")
        if manifest.logs.forward:
            bundle.report.dropped(None, "logs.forward", "corral's forwarder does not run under "
                                  "compose: a log driver (fluentd, syslog) or a collector "
                                  "ships them")
        # the loaded manifest's values are final: a '$' in them is a literal one, which
        # compose would interpolate unless written '$$'
        services = {n: escaped(service(manifest, n, options, bundle))
                    for n in manifest.agents}
        doc: dict[str, Any] = {"version": "3.8", "services": services}
        named = sorted({os.path.basename(v.source) for a in manifest.agents.values()
                        for v in a.volumes if v.named})
        if named:
            doc["volumes"] = {v: {} for v in named}
        if manifest.secrets:
            doc["secrets"] = {}
            for s, src in manifest.secrets.items():
                if src.file is not None:
                    doc["secrets"][s] = {"file": _where(src.file, options.out_dir)}
                else:
                    doc["secrets"][s] = {"file": f"./secrets/{s}"}
                    bundle.report.changed(None, f"secrets.{s}", f"read from ./secrets/{s} "
                                          "(write the value there)")
        for agent, svc in services.items():
            build = svc.get("build")
            if build and str(build.get("dockerfile", "")).startswith("__GENERATED__/"):
                # compose reads dockerfile relative to the context: the export's copy
                out = options.out_dir or os.path.abspath(os.path.join("export", self.name))
                generated = os.path.join(out, build["dockerfile"].removeprefix(
                    "__GENERATED__/"))
                context = os.path.join(out, build["context"])  # (absolute stays absolute)
                build["dockerfile"] = os.path.relpath(generated, context)
                bundle.report.notes.append(f"{agent}: built from {build['dockerfile']} "
                                           "(generated)")
        bundle.files["compose.yaml"] = yaml.safe_dump(doc, sort_keys=False, width=100)
        return bundle


def _where(path: str, out_dir: str | None) -> str:
    """A host path as the compose file names it: relative to the file's directory when the
    export is written (compose resolves it from there, and the export moves with its
    project), else as it is."""
    if out_dir is None:
        return path
    rel = os.path.relpath(path, out_dir)
    return rel if rel.startswith("..") else f"./{rel}"
