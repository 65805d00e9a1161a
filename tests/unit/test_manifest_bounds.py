"""Every number has a range, declared once on the spec's fields (``rules.Within``) and the
same in the CLI's validation, the daemon's decoder and the schema."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest

from corral.errors import ManifestError
from corral.manifest import bounds, decode, rules, spec
from corral.manifest.loader import load_text
from corral.manifest.schema import json_schema, model_classes
from corral.manifest.spec import Manifest


def _withins(tp: Any) -> list[rules.Within]:
    """Every ``rules.Within`` on a field's type, also inside ``X | None`` and ``list[X]``."""
    found: list[rules.Within] = []
    stack = [tp]
    while stack:
        arg = stack.pop()
        found.extend(m for m in getattr(arg, "__metadata__", ()) if isinstance(m, rules.Within))
        stack.extend(get_args(arg))
    return found


def _spec_classes() -> dict[str, type]:
    return {c.__name__: c for c in vars(spec).values()
            if isinstance(c, type) and dataclasses.is_dataclass(c)}


def _spec_ranges() -> dict[str, dict[str, bounds.Range]]:
    """The ranges the spec's fields declare: the one table both sides read."""
    out: dict[str, dict[str, bounds.Range]] = {}
    for name, cls in _spec_classes().items():
        for field_name, tp in get_type_hints(cls, include_extras=True).items():
            found = _withins(tp)
            assert len(found) <= 1, f"{name}.{field_name} has two ranges"
            if found:
                out.setdefault(name, {})[field_name] = found[0].range
    return out


def test_every_number_in_the_spec_is_bounded_above() -> None:
    """A new int or float field needs a range (a ``rules.Within`` on its type)."""
    ranged = _spec_ranges()
    for name, cls in _spec_classes().items():
        for field_name, tp in get_type_hints(cls, include_extras=True).items():
            text = str(tp)
            if ("int" in text or "float" in text) and field_name != "version":
                assert field_name in ranged.get(name, {}), f"{name}.{field_name} has no bound"


def test_the_cli_validates_with_the_spec_ranges() -> None:
    """The CLI validates each range with the spec's own marker (pydantic over the spec's
    record itself), and the schema derived from it says the bound."""
    models = model_classes(Manifest, {})
    defs = json_schema()["$defs"]
    for name, fields in _spec_ranges().items():
        for field_name, allowed in fields.items():
            assert models[name] is getattr(spec, name)  # no twin validates it
            shape = defs[name]["properties"][spec.ALIASES.get(field_name, field_name)]
            shapes = [shape, *shape.get("anyOf", ()), shape.get("items", {})]
            shapes += [s.get("items", {}) for s in shape.get("anyOf", ())]
            assert [s["maximum"] for s in shapes if "maximum" in s] == [allowed.high], name


def _load(tmp_path: Path, agent: str) -> None:
    load_text(f"agents:\n  w:\n    command: echo\n{agent}", project_dir=tmp_path, environ={})


ABSURD = {
    "memory": ("    resources: {memory: 99999999999999999999G}\n",
               "agents.w.resources.memory: '99999999999999999999G' is too large: a size is at "
               "most 1024T (1 PiB, 1125899906842624 bytes)"),
    "cpus": ("    resources: {cpus: 1.0e+308}\n",
             "agents.w.resources.cpus: input should be less than or equal to 4096"),
    "cpus_nan": ("    resources: {cpus: .nan}\n",
                 "agents.w.resources.cpus: input should be a finite number"),
    "stop_timeout": ("    stop: {timeout: 99999999999999999999h}\n",
                     "agents.w.stop.timeout: '99999999999999999999h' is too long: a duration is "
                     "at most 365d (one year, 31536000 seconds)"),
    "duration_inf": ("    stop: {timeout: .inf}\n", "agents.w.stop.timeout: inf is too long"),
    "duration_1e999": ("    stop: {timeout: '1e999'}\n", "'1e999' is too long"),
    "duration_nan": ("    readiness: {tcp: 1, period: .nan}\n",
                     "agents.w.readiness.period: nan is not a duration"),
    "replicas": ("    replicas: 10001\n",
                 "agents.w.replicas: input should be less than or equal to 10000 (got 10001)"),
    "pids": ("    resources: {pids: 5000000}\n", "less than or equal to 4194304"),
    "factor": ("    restart: {backoff: {factor: 1.0e+300}}\n",
               "agents.w.restart.backoff.factor: input should be less than or equal to 100"),
    "port": ("    container: {ports: ['99999:80']}\n",
             "agents.w.container.ports[0]: port 99999 in '99999:80' is out of range: ports "
             "are 1 to 65535"),
    "vm_port": ("    vm: {ports: [0]}\n", "agents.w.vm.ports[0]: port 0 in '0' is out of range"),
    "exit": ("    fake: {steps: [{exit: 256}]}\n", "less than or equal to 255"),
    "status": ("    readiness: {http: {port: 80, status: [99]}}\n",
               "agents.w.readiness.http.status[0]: input should be greater than or equal to 100"),
    "threshold": ("    readiness: {tcp: 1, failure_threshold: 1001}\n",
                  "less than or equal to 1000"),
    "max_restarts": ("    restart: always:10001\n", "less than or equal to 10000"),
}


@pytest.mark.parametrize("name", ABSURD)
def test_an_absurd_number_names_its_bound(name: str, tmp_path: Path) -> None:
    agent, expected = ABSURD[name]
    with pytest.raises(ManifestError) as caught:
        _load(tmp_path, agent)
    assert expected in str(caught.value)


def test_the_bounds_themselves_are_accepted(tmp_path: Path) -> None:
    _load(tmp_path, f"    replicas: {bounds.MAX_REPLICAS}\n"
                    f"    resources: {{cpus: {bounds.MAX_CPUS}, memory: 1024T, "
                    f"pids: {bounds.MAX_PIDS}}}\n    stop: {{timeout: 365d}}\n"
                    "    container: {ports: ['65535:1']}\n")


def _normalized(tmp_path: Path) -> dict[str, Any]:
    text = "agents:\n  w: {command: echo, readiness: {http: 80}}\n"
    manifest = load_text(text, project_dir=tmp_path, environ={})
    data: dict[str, Any] = json.loads(json.dumps(decode.dump(manifest)))
    return data


@pytest.mark.parametrize(("where", "value", "expected"), [
    (("agents", "w", "replicas"), 10_001, "agents.w.replicas: 10001 is out of range: at most"),
    (("agents", "w", "resources", "cpus"), 0, "it must be above 0"),
    (("agents", "w", "resources", "memory"), 2**60, "at most 1125899906842624"),
    (("agents", "w", "stop", "timeout"), 1e300, "agents.w.stop.timeout: 1e+300 is out of range"),
    (("agents", "w", "stop", "timeout"), math.nan, "expected float, got float nan"),
    (("agents", "w", "stop", "timeout"), math.inf, "expected float, got float inf"),
    (("agents", "w", "stop", "timeout"), 10**400, "expected float"),
    (("agents", "w", "readiness", "http", "status"), [200, 700], "status.1: 700 is out of range"),
    (("agents", "w", "container"), {"ports": ["70000"]}, "agents.w.container.ports.0: port 70000"),
    (("agents", "w", "command"), ["a\x00b"], "agents.w.command.0: expected str"),
    (("logs", "keep"), 10**6, "logs.keep: 1000000 is out of range: at most 1000"),
])  # fmt: skip
def test_the_daemon_holds_the_same_bounds(
    where: tuple[str, ...], value: Any, expected: str, tmp_path: Path
) -> None:
    data = _normalized(tmp_path)
    decode.manifest(data)  # the unchanged form decodes
    target = data
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    with pytest.raises(ManifestError) as caught:
        decode.manifest(data)
    assert expected in str(caught.value)


def _props(schema: dict[str, Any], model: str) -> dict[str, Any]:
    props: dict[str, Any] = schema["$defs"][model]["properties"]
    return props


def test_the_schema_carries_the_bounds() -> None:
    schema = json_schema()
    assert _props(schema, "Agent")["replicas"]["maximum"] == bounds.MAX_REPLICAS
    cpus = _props(schema, "Resources")["cpus"]["anyOf"][0]
    assert (cpus["exclusiveMinimum"], cpus["maximum"]) == (0, bounds.MAX_CPUS)
    timeout = _props(schema, "StopPolicy")["timeout"]["anyOf"][0]
    assert timeout == {"type": "number", "minimum": 0, "maximum": bounds.MAX_DURATION}
    memory = _props(schema, "Resources")["memory"]["anyOf"][0]
    assert memory["maximum"] == bounds.MAX_SIZE


@pytest.mark.timeout(30)  # a backtracking pattern takes forever on these, a good one no time
def test_the_schemas_duration_pattern_does_not_backtrack() -> None:
    import re

    pattern = json_schema()["$defs"]["StopPolicy"]["properties"]["timeout"]["anyOf"][1]["pattern"]
    assert re.match(pattern, "1" * 10_000 + "x") is None
    assert re.match(pattern, "1m" * 10_000 + "x") is None
    for ok in ("10s", "1m30s", "1.5h", "10", " 1h 30m ", "500ms"):
        assert re.match(pattern, ok), ok


def test_nothing_here_imports_pydantic_for_the_daemon() -> None:
    import subprocess
    import sys

    code = ("import sys, corral.manifest.decode, corral.manifest.dotenv, corral.manifest.files;"
            "print('pydantic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

