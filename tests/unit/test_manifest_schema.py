"""The JSON Schema for editors, and the normalized dump for `corral config`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.drivers import registry
from corral.manifest.hints import field_names
from corral.manifest.loader import load_text
from corral.manifest.schema import dump, json_schema, model_classes
from corral.manifest.spec import Manifest


def _walk(node: Any) -> list[Any]:
    out = [node]
    if isinstance(node, dict):
        for value in node.values():
            out.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            out.extend(_walk(value))
    return out


def test_schema_is_json_with_draft_and_agents() -> None:
    schema = json.loads(json.dumps(json_schema()))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert "agents" in schema["properties"]
    assert schema["properties"]["agents"]["additionalProperties"] == {"$ref": "#/$defs/Agent"}
    assert "required" not in schema  # name has a default


def test_every_model_key_is_in_the_schema_by_alias() -> None:
    schema = json_schema()
    for name, model in model_classes(Manifest, {}).items():
        props = schema["properties"] if name == "Manifest" else schema["$defs"][name]["properties"]
        hidden = registry.hidden() if name == "Agent" else frozenset()
        assert set(props) == set(field_names(model)) - hidden, name
    agent = schema["$defs"]["Agent"]["properties"]
    assert "class" in agent and "class_" not in agent


def test_every_drivers_block_is_in_the_schema_but_the_fakes() -> None:
    schema = json_schema()
    agent = schema["$defs"]["Agent"]["properties"]
    assert {"venv", "node", "vm", "container"} <= set(agent)
    assert "fake" not in agent and "options" not in agent
    assert "FakeOptions" not in schema["$defs"] and "FakeStep" not in schema["$defs"]
    assert agent["container"]["anyOf"][0] == {"$ref": "#/$defs/ContainerOptions"}
    vm = schema["$defs"]["VmOptions"]["properties"]
    assert _types(vm["boot_timeout"]) == ["number", "string"]  # the duration shortcut
    assert schema["$defs"]["ContainerOptions"]["additionalProperties"] is False


def test_refs_resolve_and_keywords_are_json_schema() -> None:
    schema = json_schema()
    for node in _walk(schema):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                assert ref.removeprefix("#/$defs/") in schema["$defs"], ref
            assert "ge" not in node or "properties" in node  # pydantic's non-schema keyword


def _types(prop: dict[str, Any]) -> list[Any]:
    return [option.get("type", option.get("$ref", option.get("enum"))) for option in prop["anyOf"]]


def test_shortcuts_are_allowed() -> None:
    defs = json_schema()["$defs"]
    agent = defs["Agent"]["properties"]
    assert _types(agent["command"]) == ["string", "array"]
    assert "string" in _types(agent["env_file"]) and "array" in _types(agent["env_file"])
    assert _types(agent["depends_on"]) == ["string", "array", "object"]
    assert ["no", "on-failure", "always", "unless-stopped"] in _types(agent["restart"])
    assert {"const": False} in agent["restart"]["anyOf"]
    assert _types(agent["env"]) == ["object", "array"]
    assert agent["class"]["enum"] == ["compute", "io", "service", "ai"]
    assert "process" in agent["isolation"]["examples"]
    probe = defs["Probe"]["properties"]
    assert _types(probe["tcp"]) == ["integer", "string", "#/$defs/TcpCheck", "null"]
    assert _types(probe["exec"])[:2] == ["string", "array"]
    assert _types(probe["period"]) == ["number", "string"]
    assert probe["period"]["default"] == 10.0
    logs = defs["LogsConfig"]["properties"]
    assert _types(logs["max_size"]) == ["integer", "string"]
    assert _types(logs["max_age"]) == ["number", "string", "null"]


def test_descriptions_for_editors() -> None:
    schema = json_schema()
    assert "health check" in schema["$defs"]["Agent"]["properties"]["class"]["description"]
    assert schema["$defs"]["Probe"]["description"].startswith("One health probe")
    assert schema["properties"]["name"]["description"]
    assert "^x-" in schema["patternProperties"]


FULL = """
name: demo
x-base: &base {env: {SHARED: "1"}}
agents:
  db:
    class: service
    command: redis-server --port 6379
    readiness: {tcp: 6379, period: 2s}
    ready_log_line: "Ready to accept"
    stop: {signal: INT, timeout: 1m}
  web:
    <<: *base
    command: ["python", "-c", "print('$$HOME')"]
    env_file: [{path: web.env, required: false}]
    depends_on: {db: {condition: healthy}}
    restart: on-failure:5
    replicas: 2
    labels: {tier: front}
  job:
    class: compute
    command: echo done && exit 0
    shell: true
    fake: {steps: [{print: [hi], sleep: 0.1, exit: 0}]}
    isolation: fake
"""


def test_dump_round_trips(tmp_path: Path) -> None:
    manifest = load_text(FULL, project_dir=tmp_path, environ={})
    text = dump(manifest)
    again = load_text(text, project_dir=tmp_path / "elsewhere", environ={"HOME": "/nope"})
    assert again == manifest
    assert manifest.agents["web"].command[2] == "print('$HOME')"
    assert "$$HOME" in text


def test_dump_is_normalized_yaml_in_model_order(tmp_path: Path) -> None:
    manifest = load_text(FULL, project_dir=tmp_path, environ={})
    data = yaml.safe_load(dump(manifest))
    assert list(data) == [
        "version",
        "name",
        "project_dir",
        "state_dir",
        "metrics",
        "dashboard",
        "logs",
        "agents",
        "secrets",
        "inherit_env",
        "cluster",
        "cloud",
        "events",
    ]
    web = data["agents"]["web"]
    assert list(web)[:4] == ["description", "class", "isolation", "command"]
    assert web["restart"]["policy"] == "on-failure" and web["restart"]["max_restarts"] == 5
    assert web["env_file"] == [{"path": str(tmp_path / "web.env"), "required": False}]
    assert data["agents"]["db"]["stop"] == {"signal": "SIGINT", "timeout": 60.0}


def test_schema_accepts_what_the_loader_accepts() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    public = yaml.safe_load(FULL)
    del public["agents"]["job"]["fake"]  # the fake's block is for tests: not in the schema
    assert list(validator.iter_errors(public)) == []
    bad = {"agents": {"web": {"comand": "x", "class": "servce"}}}
    assert len(list(validator.iter_errors(bad))) == 3
