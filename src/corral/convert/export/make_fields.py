"""The make export, field by field: what each manifest field becomes in the Makefile (an
instance's command, variables, readiness wait, venv rule) and, for what make cannot carry, the
report's line saying why. Kept apart from ``make`` so the table in ``docs/export.md``
and this module can be read side by side."""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

from corral.convert import fleet
from corral.convert.report import Report

if TYPE_CHECKING:
    from corral.manifest.spec import Agent, Manifest, Probe

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HOST_LEVELS = ("process", "venv", "sandbox")
# set by the helper (instance, data dir) or taken from make's environment (the clean base)
RUNTIME = {"CORRAL_INSTANCE", "CORRAL_INSTANCE_INDEX", "CORRAL_STATE_DIR", "PATH", "HOME",
           "USER", "LOGNAME", "SHELL"}


def quote(text: str) -> str:
    """A shell word inside a make recipe: quoted for sh, ``$`` doubled for make."""
    return shlex.quote(text).replace("$", "$$")


def path(manifest: Manifest, where: str) -> str:
    """``where`` under ``$(PROJECT_DIR)`` when it is there, so the Makefile follows a moved
    project (``make PROJECT_DIR=...``); otherwise as it is."""
    root = manifest.project_dir.rstrip("/")
    if where == root or where.startswith(root + "/"):
        return "$(PROJECT_DIR)" + where[len(root):].replace("$", "$$")
    return where.replace("$", "$$")


def exported(manifest: Manifest, name: str, report: Report) -> bool:
    """Whether the agent gets targets: a vm's command exists only inside its guest."""
    agent = manifest.agents[name]
    if agent.isolation in HOST_LEVELS or agent.isolation == "container":
        return True
    report.dropped(name, "isolation", f"{agent.isolation}: its command runs inside a guest "
                   "make cannot start; the agent has no targets")
    return False


def env_script(manifest: Manifest, name: str, report: Report) -> tuple[str, list[str]]:
    """The agent's variables as an sh file the helper sources (``set -a``): the agent's
    ``env`` (its env files' values merged as the loader read them) and the peers' addresses
    and ``CORRAL_*`` that ``corral up`` gives it; and their names (a container passes them
    on by name)."""
    agent = manifest.agents[name]
    lines = [f"# {name}'s environment, written by corral export make (sourced with set -a)"]
    names: list[str] = []
    for key, value in fleet.environment(manifest, name).items():
        if key in RUNTIME and key not in agent.env:
            continue
        if not IDENT.match(key):
            report.dropped(name, f"env.{key}", "not a shell variable name: sh cannot set it")
            continue
        lines.append(f"{key}={shlex.quote(value)}")
        names.append(key)
    for i, ref in enumerate(agent.env_file):
        report.changed(name, f"env_file[{i}]", f"its values as read at export are in "
                       f"env/{name}.sh; re-export after editing {ref.path}")
    return "\n".join(lines) + "\n", names


def kept(agent: Agent, name: str, report: Report) -> str:
    """The names of make's environment the agent inherits (``inherit_env``), as make
    patterns; a glob make cannot say is dropped."""
    out = []
    for pattern in agent.inherit_env:
        if "?" in pattern or "[" in pattern or pattern.count("*") > 1:
            report.dropped(name, f"inherit_env[{pattern}]", "only NAME and one '*' can be "
                           "matched by make's filter")
            continue
        if "*" in pattern:
            report.changed(name, f"inherit_env[{pattern}]", "matched by make, without "
                           "corral's skipping of credential-looking names")
            out.append(f"$(filter {pattern.replace('*', '%')},$(.VARIABLES))")
        else:
            out.append(pattern)
    return " ".join(out)


def secrets(manifest: Manifest, agent: Agent, name: str, report: Report) -> str:
    """``VAR=env:SOURCE`` / ``VAR=file:PATH`` words for the helper: read at ``make up``,
    never written into the export."""
    words = []
    for i, use in enumerate(agent.secrets):
        source = manifest.secrets.get(use.source)
        where = f"secrets[{i}]"
        if use.env is None:
            report.dropped(name, where, "secret files are not made by the make export; use "
                           "env: to get it as a variable")
        elif source is None:
            report.dropped(name, where, f"no secret {use.source!r} in the manifest")
        elif source.environment is not None:
            words.append(f"{use.env}=env:{source.environment}")
        elif source.file is not None:
            words.append(f"{use.env}=file:{source.file}")
        else:
            report.dropped(name, where, "only secrets read from a variable or a file are "
                           "read by the make export's helper")
    return " ".join(words)


def venv_dir(name: str) -> str:
    return f"$(STATE)/venv/{name}"


def venv_inputs(agent: Agent) -> list[str]:
    """The files the venv is built from, includes (-r/-c) too: the stamp's prerequisites."""
    import os

    from corral.drivers.host.options import venv_block
    from corral.drivers.host.python_env import pyproject_path, requirement_files

    venv = venv_block(agent)
    if venv is None or agent.isolation not in HOST_LEVELS:
        return []
    found = []
    if venv.requirements is not None:
        top = os.path.join(agent.workdir, venv.requirements)
        seen: set[str] = set()
        list(requirement_files(top, seen))  # fills ``seen`` with every included file
        found += [top, *sorted(seen - {os.path.realpath(top)})]
    pyproject = pyproject_path(venv, agent.workdir)
    if pyproject is not None:
        found.append(pyproject)
    return list(dict.fromkeys(found))


def venv_rules(manifest: Manifest, agent: Agent, name: str) -> list[str]:
    """The stamp rule: rebuilt only when an input is newer than the stamp."""
    from corral.drivers.host.options import venv_block

    venv = venv_block(agent)
    if venv is None or agent.isolation not in HOST_LEVELS:
        return []
    inputs = venv_inputs(agent)
    directory = venv_dir(name)
    python = f"python{venv.python}" if venv.python else "$(PYTHON)"
    install = []
    if venv.requirements is not None:
        install += ["-r", path(manifest, inputs[0])]
    pyproject = next((p for p in inputs if p.endswith("pyproject.toml")), None)
    if pyproject is not None:
        install.append(path(manifest, pyproject.rsplit("/", 1)[0]))
    install += [quote(p) for p in venv.packages]
    deps = " ".join(path(manifest, p) for p in inputs)
    out = [f"{directory}/.stamp: {deps}", f"\t@echo '{name}: building its venv'",
           f"\trm -rf {directory} && {python} -m venv {directory}"]
    if install:
        out.append(f"\t{directory}/bin/pip install --quiet --disable-pip-version-check "
                   + " ".join(install))
    out += [f"\ttouch {directory}/.stamp", ""]
    return out


def command(manifest: Manifest, name: str, report: Report, files: dict[str, str],
            env_names: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The instance's argv as recipe words, the up target's prerequisites, and recipe lines
    that run before the instances start (an image build). ``env_names``: the variables its
    env script sets."""
    from corral.drivers.host.options import venv_block

    agent = manifest.agents[name]
    if agent.isolation == "container":
        return _container(manifest, name, report, files, env_names)
    argv = [quote(w) for w in agent.argv]
    if agent.isolation == "sandbox":
        report.changed(name, "isolation", "sandbox runs as a plain host process: make has no "
                       "bubblewrap walls")
    if venv_block(agent) is not None:
        directory = venv_dir(name)
        env = [f'"VIRTUAL_ENV={directory}"', f'"PATH={directory}/bin:$$PATH"']
        return ["env", *env, *argv], [f"{directory}/.stamp"], []
    return argv, [], []


def _container(manifest: Manifest, name: str, report: Report, files: dict[str, str],
               env_names: list[str]) -> tuple[list[str], list[str], list[str]]:
    from corral.convert import images
    from corral.drivers.container.options import container_options

    agent = manifest.agents[name]
    options = container_options(agent)
    image = images.for_agent(manifest, name, report)
    build: list[str] = []
    if image.built:
        assert image.context is not None
        file = image.own_file
        if image.containerfile is not None:
            files[f"build/{name}/Containerfile"] = image.containerfile
            file = None
        where = path(manifest, file) if file else f"$(HERE)/build/{name}/Containerfile"
        build.append(f'\t@podman build -q -t {quote(image.ref)} -f "{where}" '
                     f'"{path(manifest, image.context)}"')
    words = ["podman", "run", "--rm", "--init", "--sig-proxy=true"]
    if agent.network == "none":
        words.append("--network=none")
    elif agent.network == "host" or (agent.network is None and not options.ports):
        words.append("--network=host")
        if agent.network is None:
            report.changed(name, "network", "on the host's network (no project network "
                           "under make), where its peers' addresses point")
    else:
        report.changed(name, "network", f"{agent.network or 'the project network'}: "
                       "podman's default network, its ports published on 127.0.0.1")
        words += [w for port in options.ports for w in ("-p", quote(f"127.0.0.1:{port}"))]
    words += ["-e", "CORRAL_INSTANCE", "-e", "CORRAL_INSTANCE_INDEX"]
    for key in env_names:  # by name: podman takes each value from the script's env
        words += ["-e", key]
    for volume in agent.volumes:
        if volume.named:
            source = f"{manifest.name}-{volume.source.rstrip('/').rsplit('/', 1)[-1]}"
            report.changed(name, f"volumes[{volume.target}]", f"the podman named volume "
                           f"{source}")
        else:
            source = path(manifest, volume.source)
        words += ["-v", f'"{source}:{volume.target}{":ro" if volume.read_only else ""}"']
    report.changed(name, "isolation", "container runs with podman run in the foreground of "
                   "its instance (the stop signal reaches it through podman's proxy)")
    words += [quote(image.ref), *(quote(w) for w in agent.command)]
    return words, [], build


def readiness(agent: Agent, name: str, report: Report) -> tuple[str, str, list[str]] | None:
    """The helper's ``ready`` words: kind, timing, the probe's own words."""
    probe: Probe | None = agent.readiness
    if probe is None:
        if agent.ready_log_line:
            report.changed(name, "ready_log_line", "matched by grep -E (POSIX ERE, not "
                           "Python's re) in the instance's log")
            return "log", "0 0.5 5 1", [agent.ready_log_line]
        return None
    timing = (f"{probe.initial_delay:g} {probe.period:g} {probe.timeout:g} "
              f"{probe.success_threshold}")
    if probe.failure_threshold != 3 or probe.action not in (None, "none"):
        report.dropped(name, "readiness.failure_threshold", "make waits until ready or "
                       "READY_TIMEOUT; a failing probe after that is not watched")
    if probe.tcp is not None:
        return "tcp", timing, [probe.tcp.host, str(probe.tcp.port)]
    if probe.http is not None:
        h = probe.http
        report.changed(name, "readiness.http", "checked with curl")
        return "http", timing, [f"{h.scheme}://{h.host}:{h.port}{h.path}",
                                *(str(s) for s in h.status)]
    if probe.exec is not None:
        return "exec", timing, list(probe.exec.command)
    if probe.log_line is not None:
        report.changed(name, "readiness.log_line", "matched by grep -E in the log")
        return "log", timing, [probe.log_line.pattern]
    report.dropped(name, f"readiness.{probe.kind}", "make has no watcher for it; the agent "
                   "counts as ready once started")
    return None


def agent_losses(agents: dict[str, Agent], name: str, report: Report) -> None:
    """What make cannot be, said once per field that asks for it."""
    from corral.manifest.spec import Needs, Resources, RestartPolicy

    agent = agents[name]

    if agent.restart != RestartPolicy() and agent.restart.policy != "no":
        report.dropped(name, "restart", "make starts agents; nothing restarts one that exits "
                       "(make up starts it again)")
    if agent.liveness is not None:
        report.dropped(name, "liveness", "make does not watch a running agent")
    if agent.schedule is not None:
        report.dropped(name, "schedule", "make has no timer: run `make up-AGENT` from cron "
                       "(not part of up" + ("" if not agent.schedule.run_on_start else
                                             ", but run once at up: run_on_start") + ")")
    if agent.resources != Resources():
        report.dropped(name, "resources", "make sets no cgroup limits")
    if agent.user is not None:
        report.dropped(name, "user", "runs as whoever runs make")
    if agent.volumes and agent.isolation != "container":
        report.dropped(name, "volumes", "a host process sees the host's files, not mounts")
    if agent.network is not None and agent.isolation != "container":
        report.dropped(name, "network", "a host process is on the host's network")
    if any((agent.on.fatal, agent.on.restart, agent.on.oom)):
        report.dropped(name, "on", "make has no events to run hooks on")
    if agent.labels:
        report.dropped(name, "labels", "a Makefile has nowhere to put them")
    if agent.needs != Needs():
        report.dropped(name, "needs", "advice for corral recommend only")
    for dep, how in agent.depends_on.items():
        if how.restart:
            report.dropped(name, f"depends_on.{dep}.restart", "make does not see restarts")
        if how.condition == "started" and dep in agents and (
                agents[dep].readiness is not None or agents[dep].ready_log_line):
            report.changed(name, f"depends_on.{dep}", f"condition started also waits for "
                           f"{dep}'s readiness (up-{dep} always does)")
        if not how.required:
            report.changed(name, f"depends_on.{dep}.required", "a prerequisite: required")


def fleet_losses(manifest: Manifest, report: Report) -> None:
    if manifest.metrics.port is not None:
        report.dropped(None, "metrics", "no corral daemon serves metrics under make")
    if manifest.dashboard.port is not None:
        report.dropped(None, "dashboard", "no corral daemon serves the dashboard under make")
    report.changed(None, "logs", "one file per instance under $(STATE)/logs, never rotated")
