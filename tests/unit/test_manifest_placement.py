"""``placement:`` and ``cluster:``: an agent placed on a cluster a driver declares (here the
fake driver's test cluster, ``places = ("process",)``), the fleet's block as its defaults,
and ``up --target NAME`` placing every agent that can go."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.errors import ManifestError, UsageError
from corral.manifest import decode
from corral.manifest.loader import load_text
from corral.manifest.placement import place_all

FLEET = """\
name: p
cluster:
  fake: {steps: [{print: [shared]}]}
agents:
  a: {command: x, placement: fake}
  b: {command: x, placement: fake, fake: {steps: [{print: [own]}]}}
  c: {command: x, placement: local}
  d: {command: x}
  e: {command: x, venv: {}}
"""


def _problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_text(text, project_dir=str(tmp_path))
    return caught.value.problems


def test_a_placed_agent_gets_the_clusters_block_and_its_own_keys_win(tmp_path: Path) -> None:
    m = load_text(FLEET, project_dir=str(tmp_path))
    steps = {n: [s.print for s in a.options["fake"].steps] for n, a in m.agents.items()
             if a.options.get("fake")}
    assert steps == {"a": [["shared"]], "b": [["own"]]}
    assert {n: a.driver for n, a in m.agents.items()} == {
        "a": "fake", "b": "fake", "c": "process", "d": "process", "e": "venv"}
    assert m.cluster == {"fake": {"steps": [{"print": ["shared"]}]}}


def test_a_placement_no_driver_has_or_a_level_it_does_not_run_is_one_line(
        tmp_path: Path) -> None:
    assert _problems("name: p\ncluster: {moon: {}}\nagents:\n  a: {command: x, placement: "
                     "mars}\n  b: {command: x, venv: {}, placement: fake}\n", tmp_path) == [
        "agents.a: placement: no installed driver places agents on 'mars' (known: local, "
        "ray)",
        "agents.b: placement: fake runs process agents; a venv agent runs on this host "
        "(placement: local)",
        "top level: cluster.moon: no installed driver places agents there (known: ray)"]


def test_the_spec_hash_of_an_unplaced_agent_does_not_move(tmp_path: Path) -> None:
    """Added since the hashes were pinned: left out while unset (no restart on upgrade)."""
    m = load_text(FLEET, project_dir=str(tmp_path))
    assert b'"placement"' not in decode.canonical(m.agents["d"])
    assert b'"placement":"local"' in decode.canonical(m.agents["c"])
    assert b'"placement":"fake"' in decode.canonical(m.agents["a"])


def test_target_places_every_agent_that_can_go_and_names_the_rest(tmp_path: Path) -> None:
    m = load_text(FLEET, project_dir=str(tmp_path))
    placed, stays = place_all(m, "fake")
    assert stays == ["a", "b", "c", "e"]  # placed already, pinned local, a venv agent
    assert placed.agents["d"].placement == "fake"
    assert [s.print for s in placed.agents["d"].options["fake"].steps] == [["shared"]]
    assert placed.agents["c"] == m.agents["c"]
    with pytest.raises(UsageError, match=r"--target mars: no installed driver places"):
        place_all(m, "mars")


def test_the_daemons_decoder_refuses_a_placement_no_driver_takes() -> None:
    agent = {"command": ["x"], "placement": "mars"}
    with pytest.raises(ManifestError, match=r"agents\.a\.placement: mars does not run process"):
        decode.manifest({"name": "p", "agents": {"a": agent}})
    assert decode.manifest({"name": "p", "agents": {"a": {**agent, "placement": "fake"}}}
                           ).agents["a"].driver == "fake"


def test_a_cluster_written_as_the_isolation_level_names_placement(tmp_path: Path) -> None:
    assert _problems("name: p\nagents:\n  a: {command: x, isolation: ray}\n", tmp_path) == [
        "agents.a.isolation: ray is a placement, not an isolation level: write placement: "
        "ray (the agent's isolation is how it runs on the node: process or venv)"]


def test_target_ray_leaves_here_the_agents_its_nodes_cannot_run(tmp_path: Path) -> None:
    """``--target ray`` places plain venv agents, but one whose venv is over a chosen Python
    or builds a node: block stays here (the ray driver's ``unplaceable``), and so does one
    with cloud credentials (served on this host only); each named with its reason."""
    (tmp_path / "requirements.txt").write_text("six\n")
    (tmp_path / "package.json").write_text("{}\n")
    (tmp_path / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
    m = load_text("""\
name: p
cloud: {aws: {region: us-east-1}}
agents:
  plain: {command: x, venv: {requirements: requirements.txt}}
  pinned: {command: x, venv: {python: "3.11"}}
  npm: {command: x, venv: {}, node: {}}
  keyed: {command: x, aws: {role: "arn:aws:iam::123456789012:role/r"}}
  proc: {command: x}
""", project_dir=str(tmp_path))
    placed, stays = place_all(m, "ray")
    assert {n for n, a in placed.agents.items() if a.placement == "ray"} == {"plain", "proc"}
    assert stays == [
        "pinned (venv.python 3.11 cannot be chosen on the ray placement (a node's venv is "
        "over the Python Ray runs there))",
        "npm (a node: block (npm ci) is not built on the ray placement)",
        "keyed (aws: credentials are served on this host only)"]
