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
    level the cluster runs, placed on ``where``; and the names of the agents that stay
    (placed elsewhere by their own word, or at a level only this host runs)."""
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
        if agent.placement is not None or agent.isolation not in takes:
            agents[name] = agent
            stays.append(name)
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
