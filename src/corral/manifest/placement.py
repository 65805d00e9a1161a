"""``corral up --target NAME`` for a cluster a driver places agents on (``--target ray``): the
whole fleet placed there at once, as if each agent said ``placement: NAME``, with the
manifest's ``cluster.NAME`` block as each one's ``NAME:`` block (the loader's
``place_agents`` does the same for agents that say it themselves)."""

from __future__ import annotations

import dataclasses

from pydantic import ValidationError

from corral.errors import ManifestError, UsageError
from corral.manifest import decode, hints, routes, spec, validation


def place_all(manifest: spec.Manifest, where: str) -> tuple[spec.Manifest, list[str]]:
    """The manifest with every agent that has no placement of its own, and whose isolation
    level the cluster runs, placed on ``where``; and the agents that stay, each said as
    ``NAME`` or ``NAME (why)``: placed elsewhere by their own word, at a level only this host
    runs, with what the cluster's driver cannot run (``routes.unplaceable``: a venv over a
    chosen Python), or with cloud credentials (``aws:``), which only this host serves."""
    takes = routes.placements().get(where)
    if takes is None:
        known = ", ".join(["local", "kubernetes", *routes.shown_placements()])
        raise UsageError(f"--target {where}: no installed driver places agents there",
                         f"give one of {known} (the ray target: pip install 'corral[ray]')")
    agents: dict[str, spec.Agent] = {}
    stays: list[str] = []
    problems: list[str] = []
    shared = manifest.cluster.get(where) or {}
    for name, agent in manifest.agents.items():
        why = _stays(agent, where, takes)
        if why is not None:
            agents[name] = agent
            stays.append(f"{name} ({why})" if why else name)
            continue
        raw = decode.dump(agent)
        raw["placement"] = where
        raw[where] = {**shared, **(raw.get(where) or {})}
        try:
            agents[name] = validation.agent(raw)
        except ValidationError as exc:
            problems += hints.pydantic_problems(exc, spec.Agent, ("agents", name))
    if problems:
        raise ManifestError(problems)
    return dataclasses.replace(manifest, agents=agents), stays


def _stays(agent: spec.Agent, where: str, takes: tuple[str, ...]) -> str | None:
    """Why ``agent`` stays on this host ("" when its own word or level says it); None: it
    goes to ``where``."""
    if agent.placement is not None or agent.isolation not in takes:
        return ""
    if agent.aws is not None:
        return "aws: credentials are served on this host only"
    return routes.unplaceable(where, agent)
