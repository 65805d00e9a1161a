"""The manifest is declared once (``spec.py``): the CLI validates those very records, the
daemon's decoder is strict, and the spec hash is the one the pydantic models gave."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from pathlib import Path
from typing import Any

import pytest

from corral.drivers.fake import FakeOptions, FakeStep
from corral.errors import ManifestError
from corral.manifest import decode, spec
from corral.manifest.loader import load, load_text
from corral.manifest.schema import model_classes

FULL = """
name: full
metrics: {port: 9109}
logs: {max_size: 1M, keep: 2, max_age: 7d}
agents:
  db:
    description: "the database ✓"
    class: service
    command: python -c "print('db')"
    env: [A=1, B]
    env_file: [{path: db.env, required: false}]
    readiness: {tcp: 5432, period: 2s, initial_delay: 500ms}
    liveness: {exec: "true", action: kill, failure_threshold: 5}
    stop: {signal: INT, timeout: 1m30s}
    resources: {cpus: 0.5, memory: 256M, pids: 64}
    labels: {team: infra}
  web:
    command: "serve --port 8080"
    shell: true
    replicas: 3
    depends_on: {db: {condition: healthy, restart: true}}
    readiness: {http: {port: 8443, scheme: https, path: /health, status: [200, 204]}}
    liveness: {log_line: "^ready$"}
    ready_log_line: "listening on"
    restart: {policy: always, max_restarts: 3, window: 2m, backoff: {initial: 0.25, factor: 2}}
  tool:
    isolation: venv
    command: [tool]
    venv: {requirements: requirements.txt, packages: [six], python: "3.11"}
  script:
    isolation: fake
    command: fake
    restart: "no"
    fake:
      steps: [{print: [a, b], stream: stderr, sleep: 1.5}, {exit: 3}]
      start_error: nope
"""


def test_the_cli_validates_the_spec_records_themselves() -> None:
    """Every record of the manifest is declared once, in ``spec.py``, and the CLI validates
    that very class (``validation``): there is no second declaration to drift."""
    plain = {n: c for n, c in inspect.getmembers(spec, inspect.isclass)
             if dataclasses.is_dataclass(c) and c.__module__ == spec.__name__}
    assert model_classes(spec.Manifest, {}) == plain
    assert len(plain) >= 18
    for cls in plain.values():
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert hasattr(cls, "__slots__")
        assert all(f.kw_only for f in dataclasses.fields(cls)), cls


def _full(tmp_path: Path) -> spec.Manifest:
    (tmp_path / "requirements.txt").write_text("six\n")
    return load_text(FULL, project_dir=str(tmp_path), environ={})


def test_decoding_the_normalized_dump_loses_nothing(tmp_path: Path) -> None:
    validated = _full(tmp_path)
    plain = decode.manifest(decode.dump(validated))  # what the daemon makes of what it gets
    assert plain == validated
    assert plain.agents["db"].class_ == "service"
    assert decode.dump(plain)["agents"]["db"]["class"] == "service"
    assert plain.agents["web"].restart.backoff.initial == 0.25
    assert plain.agents["web"].argv == ["/bin/sh", "-c", "serve --port 8080"]
    assert plain.agents["web"].readiness is not None
    assert plain.agents["web"].readiness.kind == "http"
    assert plain.agents["script"].options["fake"] == FakeOptions(
        steps=[FakeStep(print=["a", "b"], stream="stderr", sleep=1.5),
               FakeStep(exit=3)], start_error="nope")


# computed by the pydantic models' ``model_dump_json(exclude={"replicas"})`` (the project dir
# as "{project}") before the records replaced them: a hash that moved would restart every
# instance on the first apply after an upgrade
FULL_HASHES = {"db": "45f299ed0d5a3964", "web": "11181d8aaffe0b3e",
               "tool": "6e2d345c0e63ddca", "script": "4e263f31d2730eaa"}


def test_the_spec_hashes_the_models_gave_do_not_move(tmp_path: Path) -> None:
    manifest = _full(tmp_path)
    found = {name: hashlib.sha256(decode.canonical(agent).decode().replace(
        str(tmp_path), "{project}").encode()).hexdigest()[:16]
        for name, agent in manifest.agents.items()}
    assert found == FULL_HASHES


def test_a_pinned_spec_hash_does_not_move(tmp_path: Path) -> None:
    """A stored hash that moved would restart every instance on the first apply after an
    upgrade. This value was computed by the pydantic models before the daemon dropped them."""
    (tmp_path / "corral.yaml").write_text("name: p\nagents:\n  a: {command: [sleep, '1']}\n")
    validated = load(tmp_path / "corral.yaml", environ={}).agents["a"]
    body = decode.canonical(validated).decode().replace(str(tmp_path), "{project}")
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    assert digest == PINNED_HASH, body


# moves only when the manifest gains fields (here: issue 8's user: and inherit_env), which
# restarts every agent once after the upgrade (their environments change then anyway: they
# start from the clean allow-list); fields added since are hashed only when set
# (decode.ADDED_AGENT_FIELDS); it must never move by accident
PINNED_HASH = "8c55735c357dfa15"


@pytest.mark.parametrize(("one", "other"), [
    ("", "port: 8080"), ("", "schedule: {every: 10m}"), ("", "on: {fatal: [./alert.sh]}"),
    ("liveness: {silence: 5m}", "liveness: {silence: 6m}"),
    ("liveness: {heartbeat: beat}", "liveness: {heartbeat: beat, within: 2m}")])
def test_a_field_added_since_is_hashed_once_set(tmp_path: Path, one: str, other: str) -> None:
    """Left out at its default (the pinned hash above holds), but a change once set."""
    def hashed(line: str) -> bytes:
        (tmp_path / "corral.yaml").write_text(
            f"name: p\nagents:\n  a:\n    command: [sleep, '1']\n    {line}\n")
        return decode.canonical(load(tmp_path / "corral.yaml", environ={}).agents["a"])

    assert hashed(one) != hashed(other)


def _manifest(**agent: Any) -> dict[str, Any]:
    return {"name": "p", "agents": {"a": {"command": ["x"], **agent}}}


@pytest.mark.parametrize(("raw", "problem"), [
    ({"name": "p", "agent": {}}, "agent: unknown key"),
    (_manifest(comand=["x"]), "agents.a.comand: unknown key"),
    (_manifest(class_="io"), "agents.a.class_: unknown key"),
    (_manifest(replicas=True), "agents.a.replicas: expected int, got bool"),
    (_manifest(replicas="2"), "agents.a.replicas: expected int, got str"),
    (_manifest(command="x y"), "agents.a.command: expected a list, got str"),
    (_manifest(command=["x", 1]), "agents.a.command.1: expected str, got int"),
    (_manifest(restart={"policy": "sometimes"}), "agents.a.restart.policy: expected one of"),
    (_manifest(restart={"backoff": {"initial": "1s"}}),
     "agents.a.restart.backoff.initial: expected float, got str"),
    (_manifest(depends_on=["b"]), "agents.a.depends_on: expected a mapping, got list"),
    (_manifest(readiness={"period": 1.0}), "agents.a.readiness: a probe needs exactly one"),
    (_manifest(env={"A": None}), "agents.a.env.A: expected str, got null"),
    ({"name": "p", "agents": {"../x": {"command": ["x"]}}}, "agents.../x: agent name is not"),
    ({"name": "p", "agents": {"a\n": {"command": ["x"]}}}, "agents.a\\n: agent name is not"),
    ({"name": "p\n", "agents": {}}, "name: 'p\\n' is not a valid name"),
    ({"name": "p", "agents": {"a": {}}}, "agents.a: missing command"),
    ({"name": "p", "version": True}, "version: expected one of 1, got True"),
    ({"agents": {}}, "manifest: missing name"),
    ([], "manifest: expected a mapping, got list"),
])
def test_the_decoder_rejects_what_the_cli_would_never_send(raw: Any, problem: str) -> None:
    with pytest.raises(ManifestError) as caught:
        decode.manifest(raw)
    assert caught.value.problems[0].startswith(problem), caught.value.problems


def test_the_decoder_takes_integers_for_floats_and_yaml_spelling_for_class() -> None:
    plain = decode.manifest(_manifest(**{"class": "ai"}, stop={"timeout": 3}))
    assert plain.agents["a"].class_ == "ai"
    assert plain.agents["a"].stop.timeout == 3.0
    assert isinstance(plain.agents["a"].stop.timeout, float)
