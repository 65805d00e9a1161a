"""'did you mean' and pydantic error paths."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from corral.manifest import validation
from corral.manifest.hints import did_you_mean, dotted, field_names, model_at, pydantic_problems
from corral.manifest.spec import Agent, Backoff, Dependency, Manifest, Probe, RestartPolicy


@pytest.mark.parametrize(
    ("word", "choices", "hint"),
    [
        ("comand", ["command", "class"], " (did you mean 'command'?)"),
        ("Command", ["command"], " (did you mean 'command'?)"),
        ("environment", ["env", "command"], " (did you mean 'env'?)"),
        ("working_dir", ["workdir"], " (did you mean 'workdir'?)"),
        ("environment", ["command"], ""),
        ("zzz", ["command"], ""),
        ("x", [], ""),
    ],
)
def test_did_you_mean(word: str, choices: list[str], hint: str) -> None:
    assert did_you_mean(word, choices) == hint


def test_dotted() -> None:
    assert dotted(["agents", "web", "env_file", 0, "path"]) == "agents.web.env_file[0].path"
    assert dotted([]) == ""


def test_model_at_follows_dicts_lists_and_optionals() -> None:
    assert model_at(Manifest, ["agents", "web"]) is Agent
    assert model_at(Manifest, ["agents", "web", "readiness"]) is Probe
    assert model_at(Manifest, ["agents", "web", "restart", "backoff"]) is Backoff
    assert model_at(Agent, ["depends_on", "db"]) is Dependency
    assert model_at(Agent, ["command"]) is None
    assert model_at(Agent, ["nope"]) is None


def test_field_names_use_aliases() -> None:
    assert "class" in field_names(Agent)
    assert field_names(RestartPolicy) == ["policy", "max_restarts", "window", "backoff"]


def test_pydantic_problems_paths_and_hints() -> None:
    with pytest.raises(ValidationError) as caught:
        validation.agent(
            {"command": "x", "restart": {"policy": "alwys", "backof": {}}, "env_file": [{}]}
        )
    problems = pydantic_problems(caught.value, Agent, ("agents", "web"))
    assert problems == [
        "agents.web.env_file[0].path: required key is missing (add 'path: ...')",
        "agents.web.restart.policy: 'alwys' is not one of 'no', 'on-failure', 'always' or "
        "'unless-stopped' (did you mean 'always'?)",
        "agents.web.restart.backof: unknown key (did you mean 'backoff'?)",
    ]


def test_unknown_key_without_a_close_match_lists_the_allowed_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(Backoff).validate_python({"zzz": 1})
    assert pydantic_problems(caught.value, Backoff) == [
        "zzz: unknown key (allowed here: initial, factor, max, reset_after)"
    ]
