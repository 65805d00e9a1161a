"""The daemon's plain manifest classes stay the twins of the validation models, the decoder is
strict, and the spec hash is the one the pydantic models gave."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from corral.drivers.fake import FakeOptions, FakeStep
from corral.errors import ManifestError
from corral.manifest import decode, model, spec
from corral.manifest.loader import load, load_text
from corral.manifest.schema import model_classes

TWINS = [
    cls for _, cls in inspect.getmembers(model, inspect.isclass)
    if issubclass(cls, model.Strict) and cls is not model.Strict
]

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


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return decode.dump(value, aliases=False)
    return value


def test_the_cli_validates_the_spec_records_themselves_but_two() -> None:
    """Every record below an agent is declared once, in ``spec.py``, and the CLI validates
    that very class; the agent and the manifest still have a model twin."""
    plain = {n for n, c in inspect.getmembers(spec, inspect.isclass)
             if dataclasses.is_dataclass(c) and c.__module__ == spec.__name__}
    validated = model_classes(model.Manifest, {})
    assert set(validated) == plain
    twins = {name for name, cls in validated.items() if cls is not getattr(spec, name)}
    assert twins == {cls.__name__ for cls in TWINS} == {"Agent", "Manifest"}
    assert len(plain) >= 16


@pytest.mark.parametrize("twin", TWINS, ids=[c.__name__ for c in TWINS])
def test_twins_have_the_same_fields_order_and_defaults(twin: type[BaseModel]) -> None:
    plain = getattr(spec, twin.__name__)
    fields = {f.name: f for f in dataclasses.fields(plain)}
    # the same names in the same order: the spec hash serializes them in this order
    assert list(fields) == list(twin.model_fields)
    for name, info in twin.model_fields.items():
        f = fields[name]
        assert f.kw_only, name
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        assert missing == info.is_required(), name
        if not missing:
            value = f.default_factory() if f.default is dataclasses.MISSING else f.default
            assert _default(value) == _default(info.get_default(call_default_factory=True)), name
    assert plain.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert hasattr(plain, "__slots__")


def _full(tmp_path: Path) -> model.Manifest:
    (tmp_path / "requirements.txt").write_text("six\n")
    return load_text(FULL, project_dir=str(tmp_path), environ={})


def test_decoding_the_normalized_dump_loses_nothing(tmp_path: Path) -> None:
    validated = _full(tmp_path)
    plain = validated.to_spec()
    assert decode.dump(plain) == validated.model_dump(mode="json", by_alias=True)
    assert plain.agents["db"].class_ == "service"
    assert plain.agents["web"].restart.backoff.initial == 0.25
    assert plain.agents["web"].argv == validated.agents["web"].argv
    assert plain.agents["web"].readiness is not None
    assert plain.agents["web"].readiness.kind == "http"
    assert plain.agents["script"].options["fake"] == FakeOptions(
        steps=[FakeStep(print=["a", "b"], stream="stderr", sleep=1.5),
               FakeStep(exit=3)], start_error="nope")


def _loadable_fixtures() -> list[Path]:
    here = Path(__file__).parent / "manifests"
    return [p for p in sorted(here.glob("*.yaml")) if "# expect:" not in p.read_text()
            and "# file:" not in p.read_text()]


def test_spec_hash_input_is_the_models_json_byte_for_byte(tmp_path: Path) -> None:
    manifests = [_full(tmp_path)]
    for path in _loadable_fixtures():
        text = path.read_text()
        env = dict(re.findall(r"^# env: (\w+)=(.*)$", text, re.M))
        manifests.append(load_text(text, project_dir=str(tmp_path), environ=env))
    checked = 0
    for validated in manifests:
        plain = validated.to_spec()
        for name, agent in validated.agents.items():
            expected = agent.model_dump_json(exclude={"replicas"}).encode()
            assert decode.canonical(plain.agents[name]) == expected
            checked += 1
    assert checked >= 6


def test_a_pinned_spec_hash_does_not_move(tmp_path: Path) -> None:
    """A stored hash that moved would restart every instance on the first apply after an
    upgrade. This value was computed by the pydantic models before the daemon dropped them."""
    (tmp_path / "corral.yaml").write_text("name: p\nagents:\n  a: {command: [sleep, '1']}\n")
    validated = load(tmp_path / "corral.yaml", environ={}).agents["a"]
    body = decode.canonical(validated.to_spec()).decode().replace(str(tmp_path), "{project}")
    assert body == validated.model_dump_json(exclude={"replicas"}).replace(
        str(tmp_path), "{project}")
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    assert digest == PINNED_HASH, body


# moves only when the manifest gains fields (here: issue 8's user: and inherit_env), which
# restarts every agent once after the upgrade (their environments change then anyway: they
# start from the clean allow-list); it must never move by accident
PINNED_HASH = "8c55735c357dfa15"


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
    ({"name": "p\n", "agents": {}}, "name: project name is not"),
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
