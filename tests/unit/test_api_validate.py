"""The daemon's request validator: the schemas it checks are the served document's, it knows
every keyword they use, and it refuses what the document refuses (checked against jsonschema,
which the daemon cannot import but the tests can)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import pytest

from corral.api import validate
from corral.api.http import Request
from corral.api.openapi import BODIES, MAX_REPLICAS, PARAMETERS, spec
from corral.api.server import Api


def _walk(schema: Any) -> list[dict[str, Any]]:
    if not isinstance(schema, dict):
        return []
    found = [schema]
    for key in ("items", "additionalProperties"):
        found += _walk(schema.get(key))
    for sub in schema.get("properties", {}).values():
        found += _walk(sub)
    return found


def test_every_keyword_the_request_schemas_use_is_one_the_validator_checks() -> None:
    schemas = [*BODIES.values(), *(p["schema"] for ps in PARAMETERS.values() for p in ps)]
    for schema in schemas:
        for node in _walk(schema):
            assert set(node) <= validate.KNOWN, set(node) - validate.KNOWN


def test_the_served_document_carries_the_checked_schemas() -> None:
    doc = spec()
    for (method, path), body in BODIES.items():
        op = doc["paths"][path][method.lower()]
        assert op["requestBody"]["content"]["application/json"]["schema"] is body
        assert "400" in op["responses"]
    for (method, path), params in PARAMETERS.items():
        assert doc["paths"][path][method.lower()]["parameters"] is params


SCALE = BODIES[("POST", "/v1/scale")]
START = BODIES[("POST", "/v1/start")]
CASES: list[tuple[dict[str, Any], Any]] = [
    (SCALE, {"agent": "web", "replicas": 3}),
    (SCALE, {"agent": "web", "replicas": -3}),
    (SCALE, {"agent": "web", "replicas": MAX_REPLICAS + 1}),
    (SCALE, {"agent": "web", "replicas": 2.5}),
    (SCALE, {"agent": "web", "replicas": True}),
    (SCALE, {"agent": "Web", "replicas": 1}),
    (SCALE, {"agent": "web"}),
    (SCALE, {"agent": "web", "replicas": 1, "extra": 1}),
    (SCALE, []),
    (SCALE, "x"),
    (START, {}),
    (START, {"names": None, "wait": None}),
    (START, {"names": ["web", "web.2"], "wait": 0.5}),
    (START, {"names": ["web.0"]}),
    (START, {"names": "web"}),
    (START, {"names": [1]}),
    (START, {"wait": -1}),
    (START, {"wait": 1e9}),
    (START, {"wait": "5"}),
]


@pytest.mark.parametrize(("schema", "value"), CASES)
def test_the_validator_agrees_with_jsonschema(schema: dict[str, Any], value: Any) -> None:
    expected = jsonschema.Draft202012Validator(schema).is_valid(value)
    try:
        validate.check(schema, value, "body")
        ok = True
    except validate.BadRequest:
        ok = False
    assert ok == expected


def test_a_final_dollar_is_the_end_of_the_text_as_in_ecma_regex() -> None:
    # Python's re (and so jsonschema) lets "web\n" match ^...$; JSON Schema's ECMA does not
    with pytest.raises(validate.BadRequest, match="does not match"):
        validate.check(SCALE, {"agent": "web\n", "replicas": 1}, "body")


@pytest.mark.parametrize(("body", "problem"), [
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64"),
    (b"[" * 65 + b"]" * 65, "nested deeper than 64"),
    (b'{"replicas": 1e400}', "out of range"),
    (b'{"replicas": -1e400}', "out of range"),
    (b'{"replicas": NaN}', "NaN is not allowed"),
    (b'{"replicas": Infinity}', "Infinity is not allowed"),
    (b'{"replicas": ' + b"9" * 5000 + b"}", "more than 19 digits"),
    (b'{"a": ', "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_bodies_out_of_bounds_are_refused(body: bytes, problem: str) -> None:
    with pytest.raises(validate.BadRequest, match=problem):
        validate.parse_json(body)


def test_bodies_within_bounds_parse() -> None:
    assert validate.parse_json(b"") == {}
    assert validate.parse_json(b"[" * 64 + b"]" * 64) is not None
    assert validate.parse_json(b'{"n": 123456789012345678, "x": 1.5e300}') == {
        "n": 123456789012345678, "x": 1.5e300}


LOGS = PARAMETERS[("GET", "/v1/logs")]


@pytest.mark.parametrize(("given", "problem"), [
    ({"tail": ["x"]}, "tail: expected an integer"),
    ({"tail": [""]}, "tail: expected an integer"),
    ({"tail": ["-1"]}, "at least 0"),
    ({"tail": ["1", "2"]}, "given 2 times"),
    ({"grep": ["("]}, "not a valid regular expression"),
    ({"level": ["loud"]}, "expected one of"),
    ({"agent": ["../../etc"]}, "does not match"),
    ({"instance": ["web"]}, "does not match"),
    ({"since": [""]}, "must not be empty"),
    ({"follow": ["1"]}, "unknown query parameter"),
])
def test_bad_query_parameters_are_refused(given: dict[str, list[str]], problem: str) -> None:
    with pytest.raises(validate.BadRequest, match=problem):
        validate.query(LOGS, given)


def test_query_parameters_are_typed() -> None:
    assert validate.query(LOGS, {"tail": ["10"], "agent": ["a", "b"], "instance": ["a.2"]}) == {
        "tail": 10, "agent": ["a", "b"], "instance": ["a.2"]}
    with pytest.raises(validate.BadRequest, match="missing query parameter agent"):
        validate.query(PARAMETERS[("GET", "/v1/exec")], {})


class _Broken:
    """A supervisor whose status has a bug: the API must answer 500 and log it once."""

    manifest = None

    class journal:  # the supervisor's: the API listens to its events
        @staticmethod
        def listen(callback: Any) -> Any:
            return lambda: None

    def status(self) -> list[Any]:
        raise ZeroDivisionError("a bug")


def test_a_bug_answers_500_and_is_logged_once(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api(_Broken(), shutdown=lambda _: None)  # type: ignore[arg-type]
    reply = asyncio.run(api(Request("GET", "/v1/status", {}, b"")))
    assert reply.status == 500
    assert "ZeroDivisionError: a bug" in json.loads(reply.body)["error"]  # type: ignore[union-attr]
    assert capsys.readouterr().err.count("Traceback") == 1
    bad = asyncio.run(api(Request("POST", "/v1/stop", {}, b"[]")))
    assert bad.status == 400
    assert "Traceback" not in capsys.readouterr().err
