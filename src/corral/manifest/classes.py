"""What an agent's ``class`` and ``isolation`` imply: defaults for unwritten keys, and rules.

The table is data so docs, ``corral config`` and tests read the same thing. Defaults are merged
*under* what the user wrote, key by key (a user's ``restart: {max_restarts: 3}`` keeps the class
policy and only adds the cap); a shortcut the user wrote (``restart: always``) is taken whole.

Isolation defaults to ``process``, unless a driver's loader hook says otherwise from its
block: ``venv`` when the agent has a ``venv:`` or ``node:`` block (``drivers.host.options``,
which also finds a venv agent's requirements.txt or pyproject.toml).

A sandbox has no network unless it declares one, whatever its class: ``network: host`` (every
loopback service and abstract socket of the host) or ``loopback:NAME`` is a choice written in
the manifest, never a class default (``corral up`` and ``recommend`` say so for io and service
agents, the ones likely to need it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from corral.manifest.hints import did_you_mean
from corral.manifest.spec import Agent

Normalize = Callable[[str, Any, Path], tuple[Any, list[str]]]

DEFAULT_CLASS = "io"

# PM2's manners for agents that talk to the network: come back, but not in a tight loop.
_IO_BACKOFF = {"initial": 1.0, "factor": 1.5, "max": 15.0, "reset_after": 30.0}

CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    # run to completion; a non-zero exit is a result worth retrying, a zero exit is done.
    "compute": {"restart": {"policy": "on-failure"}},
    # scrapers, bots, API clients: always come back, with backoff.
    "io": {"restart": {"policy": "always", "backoff": _IO_BACKOFF}},
    # databases, brokers: always up, and their health decides when dependents start.
    "service": {"restart": {"policy": "always"}},
    # long stateful runs: restart a crash, not a finished conversation.
    "ai": {"restart": {"policy": "on-failure"}},
}

# a scheduled agent's run is a one-shot whatever its class: it ends, and the next comes at its
# time (a failed run is retried only when asked: restart: on-failure)
SCHEDULED_DEFAULTS: dict[str, Any] = {"restart": {"policy": "no"}}

# classes that must declare how corral knows they are healthy.
NEEDS_HEALTH_CHECK = frozenset({"service"})


def merge_under(defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` over ``defaults``, recursively for mappings on both sides; neither is changed."""
    out = dict(defaults)
    for key, value in given.items():
        base = out.get(key)
        if isinstance(base, Mapping) and isinstance(value, Mapping):
            out[key] = merge_under(base, value)
        else:
            out[key] = value
    return out


def class_of(spec: Mapping[str, Any]) -> Any:
    return spec.get("class", spec.get("class_", DEFAULT_CLASS))


def apply_class_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """Loader step: fill each agent's unwritten keys from its class's row of the table."""
    agents = data.get("agents")
    if not isinstance(agents, dict):
        return data
    out: dict[str, Any] = {}
    for name, spec in agents.items():
        cls = class_of(spec) if isinstance(spec, dict) else None
        if isinstance(cls, str) and cls in CLASS_DEFAULTS:
            defaults = CLASS_DEFAULTS[cls]
            if spec.get("schedule") is not None:
                defaults = {**defaults, **SCHEDULED_DEFAULTS}
            spec = merge_under(defaults, spec)
        out[name] = spec
    return {**data, "agents": out}


def agent_problems(name: str, agent: Agent, drivers: Collection[str]) -> list[str]:
    """Rules that follow from the class and isolation, checked on the validated agent."""
    out = []
    if agent.class_ in NEEDS_HEALTH_CHECK and agent.readiness is None and agent.liveness is None:
        out.append(
            f"agents.{name}: a {agent.class_} agent needs a health check "
            "(add readiness: {tcp: PORT} or another probe) or set class: io"
        )
    if agent.schedule is not None and agent.restart.policy in ("always", "unless-stopped"):
        out.append(
            f"agents.{name}.restart: a scheduled agent's run must end, and restart: "
            f"{agent.restart.policy} never lets it; use restart: no (the default) or on-failure")
    if agent.isolation == "sandbox" and agent.network != "host":
        for kind, probe in (("readiness", agent.readiness), ("liveness", agent.liveness)):
            if probe is not None and (probe.tcp is not None or probe.http is not None):
                out.append(
                    f"agents.{name}.{kind}: a {'tcp' if probe.tcp else 'http'} probe cannot "
                    f"reach a sandbox with network: {agent.network or 'none (the default)'}; "
                    "declare network: host, or probe with exec: (it runs inside the sandbox)")
    if agent.isolation not in drivers:
        from corral.manifest import routes

        if agent.isolation in routes.placements():  # a cluster, not a level
            levels = " or ".join(routes.placements()[agent.isolation])
            out.append(f"agents.{name}.isolation: {agent.isolation} is a placement, not an "
                       f"isolation level: write placement: {agent.isolation} (the agent's "
                       f"isolation is how it runs on the node: {levels})")
        else:
            out.append(
                f"agents.{name}.isolation: no driver named {agent.isolation!r}"
                f"{did_you_mean(agent.isolation, drivers)}; drivers: "
                f"{', '.join(sorted(drivers))}")
    return out


# --- isolation ----------------------------------------------------------------------------


def absolute(base: Path, value: str) -> Path:
    """``value`` (``~`` expanded) relative to ``base``, normalized; absolute values stay."""
    # os.path's expanduser: pathlib's raises RuntimeError for ~nosuchuser
    return Path(os.path.normpath(base / os.path.expanduser(value)))


def agent_isolation(name: str, spec: Any, project_dir: Path,
                    hooks: Sequence[Normalize] = ()) -> tuple[Any, list[str]]:
    """Loader step for one agent (paths already absolute): the drivers' hooks fill in what
    their blocks imply (``drivers.host.options``: a ``venv:`` block means isolation venv),
    then an agent that still names no isolation is a plain process."""
    problems: list[str] = []
    for hook in hooks:
        spec, found = hook(name, spec, project_dir)
        problems.extend(found)
    if isinstance(spec, dict) and "isolation" not in spec:
        spec = {**spec, "isolation": "process"}
    return spec, problems
