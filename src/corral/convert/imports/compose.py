"""``corral import compose``: a compose file to a corral.yaml. The file is checked against the
Compose Specification's own schema (shipped: ``compose-spec.json``, see its NOTICE) on a copy
with ``${VAR:-default}`` filled in; the manifest keeps the variables as written."""

from __future__ import annotations

import argparse
import json
import os
import re
from functools import cache
from importlib import resources as pkg
from typing import Any

import yaml

from corral.convert.imports import compose_extends
from corral.convert.imports import compose_map as m
from corral.convert.report import Report
from corral.errors import CorralError
from corral.manifest import files, yamlread

NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
MAPPED = {"image", "build", "command", "entrypoint", "depends_on", "healthcheck", "environment",
          "env_file", "secrets", "volumes", "ports", "deploy", "scale", "restart",
          "stop_signal", "stop_grace_period", "profiles", "labels", "working_dir", "user",
          "network_mode", "pull_policy", "pids_limit"}
ORDER = ("description", "isolation", "container", "command", "workdir", "user", "env",
         "inherit_env", "env_file", "replicas", "depends_on", "readiness", "restart", "stop",
         "resources", "network", "volumes", "secrets", "labels")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def find(path: str | None) -> str:
    if path is not None:
        if not os.path.exists(path):
            raise CorralError(f"{path}: no such file", "give the compose file to import")
        return os.path.abspath(path)  # a directory or a fifo: ``read`` says what it is
    for name in NAMES:
        if os.path.isfile(name):
            return os.path.abspath(name)
    raise CorralError(f"no {' / '.join(NAMES)} in {os.getcwd()}",
                      "give the compose file: corral import compose FILE")


@cache
def _schema() -> dict[str, Any]:
    text = pkg.files("corral.convert.imports").joinpath("compose-spec.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _defaults(value: Any) -> Any:
    """A copy with each ``${VAR:-x}`` as its default (``${VAR}``: empty), for the schema."""
    if isinstance(value, str):
        return _VAR.sub(lambda g: g.group(3) or "" if (g.group(2) or "").endswith("-")
                        else "", value)
    if isinstance(value, dict):
        return {k: _defaults(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_defaults(v) for v in value]
    return value


def _typed(value: Any) -> Any:
    """Digit strings as numbers, as compose does after interpolation (``${PORT:-80}``)."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return value


def read(source: str) -> dict[str, Any]:
    """The file's YAML, checked by the schema; one line for the first problem."""
    import jsonschema  # type: ignore[import-untyped]

    try:  # bounded as corral.yaml is: size, nesting, alias bombs, duplicate keys
        data = yamlread.load(files.read_text(source))
    except files.Unreadable as exc:
        raise CorralError(f"{source}: {exc}", "give a compose file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise CorralError(f"{source}:{where} is not valid YAML: "
                          f"{getattr(exc, 'problem', exc)}", "fix the YAML") from None
    except OSError as exc:
        raise CorralError(f"cannot read {source}: {exc.strerror}", "check the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise CorralError(f"{source} has no services: mapping", "give a compose file")
    checked = _defaults(data)
    errors = sorted(jsonschema.Draft7Validator(_schema()).iter_errors(checked),
                    key=lambda e: list(map(str, e.absolute_path)))
    errors = [e for e in errors if _typed_fails(e, checked)]
    if errors:
        err = errors[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        raise CorralError(f"{source}: {where.lstrip('.') or '(top)'}: {err.message[:200]}",
                          "fix that key as the Compose Specification says")
    return data


def _typed_fails(err: Any, checked: Any) -> bool:
    import jsonschema

    return any(True for _ in jsonschema.Draft7Validator(err.schema).iter_errors(
        _typed(err.instance)))


def _agent(name: str, svc: dict[str, Any], top: dict[str, Any], report: Report) -> dict[str, Any]:
    a: dict[str, Any] = {"isolation": "container"}
    box: dict[str, Any] = {}
    if "image" in svc:
        box["image"] = svc["image"]
    if "build" in svc:
        b = svc["build"]
        ctx, extra = (b, {}) if isinstance(b, str) else (b.get("context", "."), b)
        if "://" in ctx or ctx.startswith("git@"):
            report.dropped(name, "build", f"{ctx}: corral builds from a directory here; "
                           "build the image and give it as container.image")
        else:  # the context is the agent's workdir: `isolation: venv` then runs in it
            a["workdir"] = ctx
            box["build"] = "."
        if "dockerfile" in extra:
            box["file"] = extra["dockerfile"]
        for key in set(extra) - {"context", "dockerfile"}:
            report.dropped(name, f"build.{key}", "corral builds with a context and a file")
        if "image" in svc:
            report.dropped(name, "image", "with build: corral names the image it builds")
            box.pop("image")
    if "pull_policy" in svc and svc["pull_policy"] in ("missing", "always", "never"):
        box["pull_policy"] = svc["pull_policy"]
    elif "pull_policy" in svc:
        report.dropped(name, "pull_policy", f"{svc['pull_policy']!r} is not known to corral")
    if "ports" in svc:
        ports = []
        for i, p in enumerate(svc["ports"]):
            if isinstance(p, dict):
                p = f"{p['published']}:{p['target']}" if "published" in p else str(p["target"])
            text = str(p)
            if _VAR.sub("V", text).count(":") == 2:
                report.changed(name, f"ports[{i}]", "published on 127.0.0.1 (corral's rule), "
                               "not the address given")
                text = text[len(_VAR.sub("V", text).split(":", 1)[0]) + 1:]
            if "/" in text:
                text, protocol = text.split("/", 1)
                if protocol != "tcp":
                    report.dropped(name, f"ports[{i}]", f"{protocol}: corral publishes tcp "
                                   "ports only")
                    continue
            if text in ports:
                report.dropped(name, f"ports[{i}]", f"{text} is published already")
                continue
            ports.append(text)
        box["ports"] = ports
    a["container"] = box
    argv = m.command(svc, name, report)
    if argv:
        a["command"] = argv
    if "working_dir" in svc:
        report.changed(name, "working_dir", "the directory inside the image is the image's "
                       "WORKDIR in corral; corral's workdir is the build context's host dir")
    if "user" in svc:
        report.dropped(name, "user", "a container agent runs as its image's USER in corral "
                       "(set USER in its Containerfile)")
    if "environment" in svc:
        a["env"] = m.environment(svc["environment"])
        if m.passed_through(svc["environment"]):
            a["inherit_env"] = m.passed_through(svc["environment"])
    if "env_file" in svc:
        a["env_file"] = m.env_files(svc["env_file"])
    deploy = svc.get("deploy") or {}
    replicas = deploy.get("replicas", svc.get("scale"))
    if replicas is not None and replicas != 1:
        a["replicas"] = replicas
    if "depends_on" in svc:
        a["depends_on"] = m.depends(svc["depends_on"], name, report)
    if "healthcheck" in svc:
        probe = m.probe(svc["healthcheck"], name, report)
        if probe is not None:
            a["readiness"] = probe
    if "restart" in svc:
        a["restart"] = m.restart(svc["restart"])
    stop: dict[str, Any] = {}
    if "stop_signal" in svc:
        stop["signal"] = svc["stop_signal"]
    if "stop_grace_period" in svc:
        stop["timeout"] = svc["stop_grace_period"]
    if stop:
        a["stop"] = stop
    res = m.resources(deploy, name, report) if deploy else {}
    if "pids_limit" in svc:
        res["pids"] = svc["pids_limit"]
    if res:
        a["resources"] = res
    for key in set(deploy) - {"resources", "replicas"}:
        report.dropped(name, f"deploy.{key}", "corral runs on one host (no swarm placement)")
    if svc.get("network_mode") in ("none", "host"):
        a["network"] = svc["network_mode"]
    elif "network_mode" in svc:
        report.dropped(name, "network_mode", f"{svc['network_mode']!r}: corral knows none "
                       "and host")
    if "volumes" in svc:
        a["volumes"] = m.volumes(svc["volumes"], set(top.get("volumes") or {}), name, report)
    if "secrets" in svc:
        a["secrets"] = [s if isinstance(s, str) else
                        {k: v for k, v in s.items() if k in ("source", "target")}
                        for s in svc["secrets"]]
        for i, s in enumerate(svc["secrets"]):
            for key in set(s if isinstance(s, dict) else {}) - {"source", "target"}:
                report.dropped(name, f"secrets[{i}].{key}", "corral writes secrets 0400, "
                               "owned by the agent")
    if "labels" in svc:
        a["labels"] = m.labels(svc["labels"])
    for key in sorted(set(svc) - MAPPED):
        report.dropped(name, key, m.REASONS.get(key, "no corral counterpart"))
    return {k: a[k] for k in ORDER if k in a}


def convert(source: str, args: argparse.Namespace) -> tuple[str, Report]:
    data = read(source)
    report = Report("import compose")
    profiles = set(getattr(args, "profile", []) or [])
    agents: dict[str, Any] = {}
    origin: dict[str, str] = {}  # agent -> its service: the report names the source's keys
    merged = compose_extends.resolve(data["services"], source, read)
    for name, svc in merged.items():
        ext = (data["services"][name] or {}).get("extends")
        if ext is not None:
            whence = ext if isinstance(ext, str) else \
                f"{ext.get('file') or os.path.basename(source)}#{ext.get('service')}"
            report.changed(name, "extends", f"merged from {whence} as compose merges it")
        wanted = svc.get("profiles")
        if wanted and not profiles & set(wanted):
            report.dropped(name, "profiles", f"left out: in profile {', '.join(wanted)} (pass "
                           "--profile to keep it)")
            continue
        agent = _agent_name(name)
        if agent != name:
            report.changed(name, "name", f"the agent is {agent!r} ({spec_rule()})")
        agents[agent] = _agent(name, svc, data, report)
        origin[agent] = name
    secrets: dict[str, Any] = {}
    for sname, spec in (data.get("secrets") or {}).items():
        if "file" in spec:
            secrets[sname] = {"file": spec["file"]}
        elif "environment" in spec:
            secrets[sname] = {"environment": spec["environment"]}
        else:
            report.dropped(None, f"secrets.{sname}", "external secrets have no source corral "
                           "reads")
    _drop_dangling(agents, secrets, report, origin)
    for key in sorted(set(data) - {"services", "secrets", "volumes", "name", "version"}):
        report.dropped(None, key, "no corral counterpart at the fleet level")
    project = args.name or data.get("name") or os.path.basename(os.path.dirname(source))
    manifest: dict[str, Any] = {"name": re.sub(r"[^a-z0-9_-]", "-", str(project).lower()),
                                "agents": agents}
    if secrets:
        manifest["secrets"] = secrets
    header = (f"# Imported from {os.path.basename(source)} by 'corral import compose'.\n"
              "# Change isolation: container to process or venv to run an agent on the host.\n")
    body = yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False, width=100)
    return header + body, report


def _agent_name(service: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", service.lower())


def spec_rule() -> str:
    from corral.manifest.spec import NAME_RULE

    return NAME_RULE


def _drop_dangling(agents: dict[str, Any], secrets: dict[str, Any], report: Report,
                   origin: dict[str, str]) -> None:
    """What names a service left out (its profile) or a secret with no source corral reads
    (external) is dropped with it, so the manifest loads: each drop is in the report."""
    for name, agent in agents.items():
        deps = agent.get("depends_on") or {}
        for dep in [d for d in deps if _agent_name(d) not in agents]:
            report.dropped(origin[name], f"depends_on.{dep}", f"{dep} is not imported (see its own "
                           "lines)")
            del deps[dep]
        renamed = {_agent_name(d): v for d, v in deps.items()}
        if renamed != deps:
            agent["depends_on"] = renamed
        if "depends_on" in agent and not agent["depends_on"]:
            del agent["depends_on"]
        uses = agent.get("secrets") or []
        kept = [u for u in uses if (u if isinstance(u, str) else u.get("source")) in secrets]
        for use in uses:
            if use not in kept:
                source = use if isinstance(use, str) else use.get("source")
                report.dropped(origin[name], f"secrets.{source}", f"the secret {source} has no "
                               "source corral reads (external)")
        if uses and not kept:
            del agent["secrets"]
        elif uses:
            agent["secrets"] = kept
