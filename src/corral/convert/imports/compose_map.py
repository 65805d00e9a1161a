"""One compose service to one corral agent: each key compose and corral share, mapped; every
other key named in the report with the reason, so nothing is dropped silently. Values stay
as written (``${VAR}`` too): corral's loader interpolates the same syntax at ``up``."""

from __future__ import annotations

import shlex
from typing import Any

from corral.convert.report import Report

CONDITIONS = {"service_started": "started", "service_healthy": "healthy",
              "service_completed_successfully": "completed_successfully"}
# keys with no corral counterpart and why; anything not here and not mapped is dropped too
REASONS = {
    "networks": "corral agents share the host's loopback or their container network",
    "logging": "corral keeps each agent's log in its state dir (logs: in the manifest)",
    "cap_add": "corral's container level sets its own capabilities",
    "cap_drop": "corral's container level sets its own capabilities",
    "privileged": "corral never runs agents privileged",
    "hostname": "corral names an agent's host after the agent",
    "extra_hosts": "corral writes the peers' hosts entries itself",
    "dns": "the engine's DNS is used",
    "tty": "agents run without a terminal (corral attach gives one)",
    "stdin_open": "agents run without a terminal (corral attach gives one)",
    "expose": "ports inside a container are open to its peers already",
    "container_name": "corral names containers corral-PROJECT-AGENT.N itself",
    "init": "corral's container level chooses its own init",
}


def command(svc: dict[str, Any], name: str, report: Report) -> list[str]:
    """entrypoint then command, as compose runs them; a string is split like a shell. None
    of either: empty, and the image's own command runs (a container agent may leave it out)."""
    def words(v: Any) -> list[str]:
        return shlex.split(v) if isinstance(v, str) else [str(x) for x in (v or [])]
    if svc.get("entrypoint"):
        report.changed(name, "entrypoint", "corral passes its command as the image's CMD, "
                       "after the image's own ENTRYPOINT: where the image has one, set the "
                       "entrypoint in a Containerfile of the agent's own")
    return words(svc.get("entrypoint")) + words(svc.get("command"))


def depends(value: Any, name: str, report: Report) -> dict[str, Any]:
    if isinstance(value, list):
        return {str(dep): {} for dep in value}
    out: dict[str, Any] = {}
    for dep, spec in (value or {}).items():
        entry: dict[str, Any] = {}
        cond = (spec or {}).get("condition", "service_started")
        if cond in CONDITIONS:
            if cond != "service_started":
                entry["condition"] = CONDITIONS[cond]
        else:
            report.dropped(name, f"depends_on.{dep}.condition", f"{cond!r} is not known")
        for key in ("required", "restart"):
            if key in (spec or {}) and spec[key] != (key == "required"):
                entry[key] = spec[key]
        out[str(dep)] = entry
    return out


def probe(check: dict[str, Any], name: str, report: Report) -> dict[str, Any] | None:
    if check.get("disable"):
        return None
    test = check.get("test")
    if test is None:
        report.dropped(name, "healthcheck", "no test: the image's own HEALTHCHECK is not "
                       "known here")
        return None
    if isinstance(test, str):
        argv: list[str] = ["/bin/sh", "-c", test]
    elif test[0] == "NONE":
        return None
    elif test[0] == "CMD-SHELL":
        argv = ["/bin/sh", "-c", " ".join(test[1:])]
    else:
        argv = list(test[1:]) if test[0] == "CMD" else list(test)
    out: dict[str, Any] = {"exec": {"command": argv}}
    keys = {"interval": "period", "timeout": "timeout", "retries": "failure_threshold",
            "start_period": "initial_delay"}
    for key, ours in keys.items():
        if key in check:
            out[ours] = check[key]
    if "start_interval" in check:
        report.dropped(name, "healthcheck.start_interval", "corral probes at one period")
    return out


def environment(value: Any) -> dict[str, str]:
    """An environment's variables that have values."""
    return {k: v for k, v in _pairs(value).items() if v is not None}


def labels(value: Any) -> dict[str, str]:
    """Labels: one without a value is an empty one."""
    return {k: "" if v is None else v for k, v in _pairs(value).items()}


def passed_through(value: Any) -> list[str]:
    """An environment's names without a value (``- KEY``, ``KEY:``): compose passes them
    from the shell that runs it, as corral's ``inherit_env`` does."""
    return [k for k, v in _pairs(value).items() if v is None]


def _pairs(value: Any) -> dict[str, str | None]:
    if isinstance(value, dict):
        return {k: None if v is None else str(v) for k, v in value.items()}
    out: dict[str, str | None] = {}
    for item in value or []:
        key, eq, val = str(item).partition("=")
        out[key] = val if eq else None
    return out


def env_files(value: Any) -> list[Any]:
    items = [value] if isinstance(value, str) else list(value)
    out: list[Any] = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        else:
            entry = {"path": item["path"]}
            if item.get("required", True) is False:
                entry["required"] = False
            out.append(entry)
    return out


def volumes(value: list[Any], named: set[str], name: str, report: Report) -> list[Any]:
    out: list[Any] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) == 1:
                report.dropped(name, f"volumes[{i}]", "an anonymous volume: corral needs a "
                               "source (name it)")
                continue
            mode = parts[2] if len(parts) > 2 else "rw"
            entry: dict[str, Any] = {"source": parts[0], "target": parts[1]}
            if "ro" in mode.split(","):
                entry["read_only"] = True
            for flag in sorted(set(mode.split(",")) - {"ro", "rw", ""}):
                report.dropped(name, f"volumes[{i}]", f"mode {flag!r}: corral mounts read-only "
                               "or read-write only")
        else:
            if item.get("type", "volume") not in ("bind", "volume"):
                report.dropped(name, f"volumes[{i}]", f"type {item.get('type')!r} has no "
                               "corral counterpart")
                continue
            if "source" not in item:
                report.dropped(name, f"volumes[{i}]", "an anonymous volume: name it")
                continue
            entry = {"source": item["source"], "target": item["target"]}
            if item.get("read_only"):
                entry["read_only"] = True
            for key in sorted(set(item) - {"type", "source", "target", "read_only"}):
                report.dropped(name, f"volumes[{i}].{key}", "corral mounts a source at a "
                               "target, read-only or not, and nothing more")
        if entry["source"] in named:
            entry["named"] = True
        out.append(entry)
    return out


def resources(deploy: dict[str, Any], name: str, report: Report) -> dict[str, Any]:
    res = deploy.get("resources") or {}
    out: dict[str, Any] = {}
    limits, reserve = res.get("limits") or {}, res.get("reservations") or {}
    if "cpus" in limits:  # "${CPUS:-0.5}" stays a string: corral interpolates it at load
        cpus = limits["cpus"]
        out["cpus"] = cpus if isinstance(cpus, str) and "$" in cpus else float(cpus)
    if "memory" in limits:
        out["memory"] = limits["memory"]
    if "pids" in limits:
        out["pids"] = limits["pids"]
    if "memory" in reserve:
        out["memory_reservation"] = reserve["memory"]
    for key in set(reserve) - {"memory"}:
        report.dropped(name, f"deploy.resources.reservations.{key}", "corral reserves memory "
                       "only (limits carry cpus and pids)")
    return out


def restart(value: str) -> Any:
    return "no" if value == "no" else value


def duration(value: Any) -> Any:
    return value
