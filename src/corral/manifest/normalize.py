"""The shortcuts a manifest may use, each turned into its one full form (``value -> value``).

Users expect compose's spellings: ``restart: on-failure:5``, ``command: "a b"``,
``depends_on: [db]``, ``env: [A=1]``, ``env_file: .env``, ``tcp: 6379``, ``secrets: [pw]``,
``volumes: [data:/d:ro]``, ``stop: {signal: INT}``. Each function here takes what was written
and returns the normal form, or raises ``ValueError`` naming the problem; the validation runs
them before it checks types (process-compose's mutators, kept apart from the validators), so
``corral config`` always prints one shape and the daemon only ever decodes that shape.

Stdlib only, and never imported by the daemon.
"""

from __future__ import annotations

import re
import shlex
import signal as _signal
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from corral.manifest import bounds

if TYPE_CHECKING:  # the records the object checks take; at run time the spec imports this
    from corral.manifest import spec


def command_list(value: Any) -> Any:
    if isinstance(value, str):
        return shlex.split(value)
    return value


def signal_name(value: Any) -> str:
    if isinstance(value, int):
        try:
            return _signal.Signals(value).name
        except ValueError:
            raise ValueError(f"{value} is not a signal number") from None
    if not isinstance(value, str):
        raise ValueError("a signal is a name like SIGTERM or a number")
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name not in _signal.Signals.__members__:
        raise ValueError(f"unknown signal {value!r} (use e.g. SIGTERM, SIGINT, SIGQUIT)")
    return name


def regex(value: Any) -> Any:
    if isinstance(value, str):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        except (RecursionError, OverflowError) as exc:  # 2,000 nested groups; a{99999999999}
            problem = "nested too deeply" if isinstance(exc, RecursionError) else exc
            raise ValueError(f"invalid regular expression {value[:40]!r}: {problem}") from None
    return value



def probe_shortcuts(value: Any) -> Any:
    """``exec: "redis-cli ping"`` / ``tcp: 6379`` / ``http: 8080`` / ``log_line: "ready"``."""
    if not isinstance(value, dict):
        return value
    out = dict(value)
    if isinstance(out.get("exec"), (str, list)):
        out["exec"] = {"command": out["exec"]}
    for kind in ("tcp", "http"):
        port = out.get(kind)
        # a digit string is what ``tcp: ${PORT}`` becomes after interpolation
        if isinstance(port, int) or (isinstance(port, str) and port.strip().isdigit()):
            out[kind] = {"port": port}
    if isinstance(out.get("log_line"), str):
        out["log_line"] = {"pattern": out["log_line"]}
    return out



def depends_on(value: Any) -> Any:
    if isinstance(value, str):
        return {value: {}}
    if isinstance(value, list):
        return {str(name): {} for name in value}
    if isinstance(value, dict):
        return {k: ({} if v is None else v) for k, v in value.items()}
    return value


def env_files(value: Any) -> Any:
    if isinstance(value, (str, dict)):
        value = [value]
    if isinstance(value, list):
        return [{"path": v} if isinstance(v, str) else v for v in value]
    return value


# an environment variable's name, or a glob over names (fnmatch: * ? [...])
INHERIT_NAME = r"^[A-Za-z_*?\[][A-Za-z0-9_*?\[\]!]*$"


def inherit_names(value: list[str]) -> list[str]:
    bad = [v for v in value if not re.match(INHERIT_NAME, v)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a variable name or a glob over names "
                         "(e.g. PYTHONPATH, LC_*, HTTP*_PROXY)")
    return list(dict.fromkeys(value))


def env(value: Any) -> Any:
    """compose accepts a map or a list of ``KEY=VALUE``; values become strings."""
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for item in value:
            key, sep, val = str(item).partition("=")
            out[key] = val if sep else ""
        value = out
    if isinstance(value, dict):
        for key in value:  # execve takes neither (subprocess raises ValueError at spawn)
            if str(key) == "" or "=" in str(key):
                raise ValueError(f"variable name {str(key)[:40]!r} is not valid: it must not be "
                                 "empty or contain '='")
        return {
            str(k): ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in value.items()
        }
    return value


def user(value: Any) -> Any:
    """``user: 1000`` (YAML's int) is the uid 1000; a name must look like one (useradd's
    rules), so a typo is not read as something else. Whether it exists is the start's
    question (the manifest may be checked on another host): corral.ownership.identity."""
    if isinstance(value, bool):
        raise ValueError("user must be a user name or a uid, not a boolean")
    if isinstance(value, int):
        if not 0 <= value < 0xFFFFFFFF:
            raise ValueError(f"user: uid {value} is out of range (0 to 4294967294)")
        return str(value)
    if isinstance(value, str) and not re.fullmatch(bounds.USER, value):
        raise ValueError(f"user {value!r} is neither a user name (letters, digits, _ . -, "
                         "not starting with a digit or -) nor a uid")
    return value



def secret_uses(value: Any) -> Any:
    """compose's short form: ``secrets: [db_password]``."""
    if isinstance(value, list):
        return [{"source": v} if isinstance(v, str) else v for v in value]
    return value



def hook_list(value: Any) -> Any:
    """``fatal: "notify.sh"``: one command; a list is a list of commands."""
    return [value] if isinstance(value, (str, dict)) else value


def hook_command(value: Any) -> Any:
    """A hook given as its command: a string (split like a shell would) or an argv."""
    return {"command": value} if isinstance(value, (str, list)) else value


def volume_entries(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    out: list[Any] = []
    for item in value:
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) not in (2, 3) or not all(parts[:2]) or parts[2:] not in ([], ["ro"],
                                                                                   ["rw"]):
                raise ValueError(f"{item!r}: write SOURCE:TARGET or SOURCE:TARGET:ro")
            item = {"source": parts[0], "target": parts[1], "read_only": parts[2:] == ["ro"]}
        out.append(item)
    return out


def restart(value: Any) -> Any:
    """``restart: false`` / ``"on-failure"`` / ``"always:5"`` (at most 5 restarts)."""
    if value is False:
        return {"policy": "no"}
    if isinstance(value, str):
        name, _, count = value.partition(":")
        out: dict[str, Any] = {"policy": name.strip()}
        if count.strip():
            out["max_restarts"] = count.strip()
        return out
    return value


def agent_command(value: Any) -> Any:
    """A string command is split like a shell would, unless ``shell: true`` asks for sh."""
    if isinstance(value, dict) and isinstance(value.get("command"), str):
        value = dict(value)
        if value.get("shell"):
            value["command"] = [value["command"]]
        else:
            try:
                value["command"] = shlex.split(value["command"])
            except ValueError as exc:
                raise ValueError(f"command cannot be split: {exc}") from None
    return value


def fleet_inherit_env(value: Any) -> Any:
    """The top-level ``inherit_env`` goes into each agent's, first: an agent's list is then
    all it inherits (its spec hash moves when the fleet's list does). An agent may come as
    its mapping or already validated (the loader validates them one by one)."""
    from corral.manifest import spec

    fleet = value.get("inherit_env") if isinstance(value, dict) else None
    agents = value.get("agents") if isinstance(value, dict) else None
    if not (isinstance(fleet, list) and fleet and isinstance(agents, dict)):
        return value
    out: dict[Any, Any] = {}
    for name, agent in agents.items():
        if isinstance(agent, spec.Agent):
            both = [*fleet, *agent.inherit_env]
            if all(isinstance(v, str) for v in both):
                agent = replace(agent, inherit_env=list(dict.fromkeys(both)))
        elif isinstance(agent, dict) and isinstance(agent.get("inherit_env", []), list):
            agent = {**agent, "inherit_env": [*fleet, *agent.get("inherit_env", [])]}
        out[name] = agent
    return {**value, "agents": out}


# --- the checks over a whole record (``rules.Whole(after=...)``): each takes the record
# pydantic built and returns it, or raises ``ValueError`` naming the problem --------------


def one_probe_kind(probe: spec.Probe) -> spec.Probe:
    kinds = [k for k in bounds.PROBE_KINDS if getattr(probe, k) is not None]
    if len(kinds) != 1:
        found = ", ".join(kinds) if kinds else "none"
        raise ValueError(f"a probe needs exactly one of {', '.join(bounds.PROBE_KINDS)} "
                         f"(found: {found})")
    if probe.within is not None and probe.heartbeat is None:
        raise ValueError(bounds.WITHIN_ALONE)
    return probe


def one_sink_kind(target: spec.ForwardTarget) -> spec.ForwardTarget:
    from corral.manifest.spec import sink_kind_problem

    problem = sink_kind_problem(target)
    if problem:
        raise ValueError(problem)
    return target


def one_schedule_kind(schedule: spec.Schedule) -> spec.Schedule:
    if (schedule.cron is None) == (schedule.every is None):
        raise ValueError("give exactly one of cron (e.g. '*/5 * * * *') and every (e.g. 10m)")
    if schedule.every is not None and schedule.every < 1:
        raise ValueError(f"every: {schedule.every:g}s is too often: at least 1s")
    if schedule.timezone is not None and schedule.cron is None:
        raise ValueError("timezone goes with cron (every counts seconds, in no zone)")
    return schedule


def below_the_hard_limit(resources: spec.Resources) -> spec.Resources:
    for name in ("memory_reservation", "memory_high"):
        value = getattr(resources, name)
        if value is not None and resources.memory is not None and value > resources.memory:
            raise ValueError(f"{name} ({value} bytes) is above memory ({resources.memory} "
                             f"bytes): lower {name} or raise memory")
    return resources


def one_secret_source(source: spec.SecretSource) -> spec.SecretSource:
    given = [k for k in ("environment", "file", "env_file", "command")
             if getattr(source, k) is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of environment, file, env_file, command"
                         + (f" (got {', '.join(given)})" if given else ""))
    if source.key is not None and source.env_file is None:
        raise ValueError("key goes with env_file")
    return source


def agent_levels(agent: spec.Agent) -> spec.Agent:
    """``user:`` and ``network:`` are for the isolation levels that have them; ``command``
    may be left out only where the level has a default of its own (an image's CMD)."""
    from corral.manifest import routes, spec

    if not agent.command and not routes.runs_without_command(agent):
        own = ", or a container.image whose own command runs" if (
            agent.isolation == "container") else ""
        raise ValueError(f"command: missing or empty: add 'command: PROGRAM ARGS...'{own}")
    if agent.shell and not agent.command:
        raise ValueError("shell: true needs a command to give /bin/sh -c")
    if agent.placement not in (None, spec.LOCAL):
        takes = routes.placements().get(agent.placement)
        if takes is None:
            known = ", ".join([spec.LOCAL, *routes.shown_placements()])
            raise ValueError(f"placement: no installed driver places agents on "
                             f"{agent.placement!r} (known: {known})")
        if agent.isolation not in takes:
            raise ValueError(f"placement: {agent.placement} runs {' and '.join(takes)} agents;"
                             f" a {agent.isolation} agent runs on this host (placement: local)")
    if agent.resources.gpus and agent.placement in (None, spec.LOCAL):
        raise ValueError("resources.gpus: GPUs are scheduled by a cluster here (placement: "
                         "ray); on this host drop it, or give the devices to a container")
    if agent.user is not None and agent.isolation not in ("process", "venv", "sandbox"):
        raise ValueError(f"user: is for process, venv and sandbox agents; a {agent.isolation} "
                         "agent's user is set inside it (the image's USER, the guest's own)")
    if agent.network is not None and agent.isolation in ("process", "venv"):
        raise ValueError(f"network: {agent.network} needs isolation: sandbox (or container, "
                         f"vm); a {agent.isolation} agent shares the host's network")
    if spec.loopback_group(agent.network) is not None and agent.isolation != "sandbox":
        raise ValueError(f"network: {agent.network} is for sandboxed agents; at the "
                         f"{agent.isolation} level use none or host (containers of a fleet "
                         "share its project network already)")
    return agent


def fleet_rules(manifest: spec.Manifest) -> spec.Manifest:
    """The checks across the whole fleet: its clusters, its agents' cloud identities."""
    from corral.manifest.decode import cloud_problem

    manifest = publishers(manifest)
    for name, agent in manifest.agents.items():
        problem = cloud_problem(manifest, name, agent)
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")
    if manifest.events is not None:
        if manifest.events.sqs is None and manifest.events.sns is None:
            raise ValueError("events: names no destination (write events: {sqs: QUEUE} "
                             "and/or {sns: TOPIC})")
        if manifest.cloud.aws is None:
            raise ValueError("events: needs the fleet's cloud.aws block (cloud: {aws: "
                             "{region: ...}}): corral sends the events with its own identity")
    return known_clusters(manifest)


def publishers(manifest: spec.Manifest) -> spec.Manifest:
    """An agent's ``publishes:`` goes into its ``aws:`` block (its grant's session policy
    gains the sends); an agent with no ``aws:`` gets one of the fleet's
    ``cloud.aws.publish_role`` (or ``role_arn``) whose session policy allows those sends
    only."""
    from corral.manifest import spec

    agents = dict(manifest.agents)
    changed = False
    for name, agent in manifest.agents.items():
        if not agent.publishes:
            continue
        access = agent.aws
        if access is None:
            fleet = manifest.cloud.aws
            role = (fleet.publish_role or fleet.role_arn) if fleet is not None else None
            if role is None:
                raise ValueError(f"agents.{name}.publishes: needs a role to publish with: "
                                 "give the agent aws: {role: ARN}, or the fleet "
                                 "cloud.aws.publish_role (or role_arn)")
            access = spec.AwsAccess(role=role, policy=None)
        wanted = list(dict.fromkeys([*access.publishes, *agent.publishes]))
        agents[name] = replace(agent, aws=replace(access, publishes=wanted))
        changed = True
    return replace(manifest, agents=agents) if changed else manifest


def known_clusters(manifest: spec.Manifest) -> spec.Manifest:
    """Each ``cluster:`` block names a cluster an installed driver places agents on."""
    from corral.manifest import routes

    for name in manifest.cluster:
        if name not in routes.placements():
            known = ", ".join(routes.shown_placements()) or "none installed"
            raise ValueError(f"cluster.{name}: no installed driver places agents there "
                             f"(known: {known})")
    for i, target in enumerate(manifest.logs.forward):  # (the daemon's decoder checks too)
        for header, secret in getattr(getattr(target, target.kind), "secret_headers",
                                      {}).items():
            if secret not in manifest.secrets:
                raise ValueError(f"logs.forward[{i}].{target.kind}.secret_headers.{header}: "
                                 f"secret {secret!r} is not declared under the top-level "
                                 "secrets: (declare it, then 'corral up')")
    return manifest


def one_secret_way(use: spec.SecretUse) -> spec.SecretUse:
    if use.env is not None and use.target is not None:
        raise ValueError("a secret goes either to env or to a file target, not both")
    return use
