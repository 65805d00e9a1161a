"""Start/stop order, dependents and cycles."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.errors import CorralError
from corral.manifest.graph import (
    dependents,
    find_cycle,
    find_cycles,
    layers,
    start_order,
    stop_order,
)
from corral.manifest.loader import load_text
from corral.manifest.spec import Manifest

FLEET = """
agents:
  db: {class: service, command: db, readiness: {tcp: 5432}}
  cache: {class: service, command: cache, readiness: {tcp: 6379}}
  migrate: {class: compute, command: migrate, depends_on: {db: {condition: healthy}}}
  api: {command: api, depends_on: {migrate: {condition: completed_successfully}, cache: {}}}
  worker: {command: worker, depends_on: [db, cache]}
  web: {command: web, depends_on: [api]}
  lonely: {command: lonely}
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Manifest:
    return load_text(FLEET, project_dir=tmp_path, environ={})


def test_start_order_layers(fleet: Manifest) -> None:
    assert start_order(fleet) == [
        ["cache", "db", "lonely"],
        ["migrate", "worker"],
        ["api"],
        ["web"],
    ]


def test_stop_order_is_reversed(fleet: Manifest) -> None:
    assert stop_order(fleet) == [["web"], ["api"], ["migrate", "worker"], ["cache", "db", "lonely"]]


def test_dependents_are_transitive(fleet: Manifest) -> None:
    assert dependents(fleet, "db") == {"migrate", "api", "worker", "web"}
    assert dependents(fleet, "cache") == {"api", "worker", "web"}
    assert dependents(fleet, "web") == set()
    assert dependents(fleet, "nope") == set()


def test_find_cycle() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"a": ["b"], "b": []}) is None
    assert find_cycle({"a": ["unknown"]}) is None


def test_find_cycles_reports_each_once() -> None:
    graph = {"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"], "e": ["a"]}
    assert find_cycles(graph) == [["a", "b", "a"], ["c", "d", "c"]]


def test_layers_refuse_a_cycle() -> None:
    with pytest.raises(CorralError) as caught:
        layers({"a": ["b"], "b": ["a"], "c": []})
    assert caught.value.problem == "dependency cycle: a -> b -> a"


def test_layers_ignore_unknown_and_self() -> None:
    assert layers({"a": ["zzz"], "b": ["a"]}) == [["a"], ["b"]]


def test_empty() -> None:
    assert layers({}) == []


@pytest.mark.timeout(30)  # linear: well under a second; quadratic would take minutes
def test_a_long_chain_has_no_recursion_and_is_linear() -> None:
    n = 20_000
    graph = {f"a{i}": [f"a{i + 1}"] if i < n else [] for i in range(n + 1)}
    assert find_cycles(graph) == []
    assert len(layers(graph)) == n + 1
    graph["a20000"] = ["a0"]
    cycle = find_cycle(graph)
    assert cycle is not None and len(cycle) == n + 2
