"""Property: whatever the bytes, the loader returns a Manifest or raises ManifestError, fast.

Manifests are generated over the real key names (every record's fields, at any depth), with
scalars chosen to hit the edges (huge and non-finite numbers, units, interpolation, long
names, control characters, NUL), then mangled as text: anchors and aliases (also recursive
ones and bombs), deep nesting, truncation, inserted bytes, invalid UTF-8. A valid result must
also decode as the daemon decodes it and print as ``corral config`` prints it.

Sized for CI: 300 cases a property, ~15 s on two busy cores (``FUZZ_EXAMPLES`` raises it
for a long local run).
"""

from __future__ import annotations

import dataclasses
import os
import types
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from corral.errors import ManifestError
from corral.manifest import blocks, decode, files
from corral.manifest.hints import field_names, members
from corral.manifest.loader import load, load_text
from corral.manifest.schema import dump, model_classes
from corral.manifest.spec import Agent, Manifest

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=5), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

KEYS = sorted({key for model in model_classes(Manifest, {}).values()
               for key in field_names(model)} | {"x-a", "<<", "services", "comand"})
EDGE_TEXT = [
    "10s", "1m30s", "500ms", "99999999999999999999h", "1e999", "nan", "inf", "-1", "256M",
    "99999999999999999999G", "1024T", "${A}", "${A:-${B:-c}}", "${A:?gone}", "$$", "${", "$",
    "~nosuchuser/x", "~/x", "/", ".", "..", "a" * 300, "/a" * 2100, "x" * 140_000, "a\x00b",
    "\x1b[2J", "line\nbreak", "99999:80", "8080", "0", "65535:1", "SIGTERM", "SIGFOO", "9",
    "always:3", "on-failure:" + "9" * 50, "(", "a{99999999999}", "(" * 600 + ")" * 600,
    "sandbox", "container", "vm", "fake", "loopback:x", "host", "none", "compute", "service",
    "A=B", "", " ", "2001-13-45", "é", "\u2028",
]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.sampled_from([0, 1, -1, 65535, 65536, 10_000, 10_001, 2**63, 10**20, 10**99]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(EDGE_TEXT),
    st.text(max_size=30),
    st.sampled_from(KEYS),
)  # fmt: skip


def _values(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), children,
                        max_size=5),
    )


values = st.recursive(scalars, _values, max_leaves=25)


def _typed(tp: Any, noisy: bool, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of the field's own type (mostly in range, at the edges, sometimes past them),
    so the generator reaches valid manifests and the checks behind the first error."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _typed(args[0], noisy, depth)
    if origin in (Union, types.UnionType):  # unset (None) as often as all the rest
        options = st.one_of([_typed(a, noisy, depth) for a in args if a is not type(None)])
        return st.one_of(st.none(), options) if type(None) in args else options
    if origin is Literal:
        return st.sampled_from(args)
    # empty half the time: a list of records with every item valid is rare
    if origin is list:
        return st.one_of(st.just([]), st.lists(_typed(args[0], noisy, depth + 1), max_size=3))
    if origin is dict:
        keys = st.one_of(st.sampled_from(["web", "db", "A", "PORT"]), st.text(max_size=8))
        return st.one_of(st.just({}), st.dictionaries(keys, _typed(args[1], noisy, depth + 1),
                                                      max_size=3))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return shaped(tp, noisy, depth + 1) if depth < 6 else st.just({})
    if tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.one_of(st.integers(0, 100), st.sampled_from([0, 1, 255, 256, 65535, 10**20]))
    if tp is float:
        return st.one_of(st.floats(0, 1000), st.sampled_from(["10s", "1m30s", "365d", "1e999"]))
    if tp is str:
        return st.one_of(st.sampled_from(["echo hi", "sandbox", "host", "SIGTERM", "8080",
                                          "${A}", ".", "sub/dir", "on-failure"]),
                         st.text(max_size=10))
    return values if noisy else st.none()


# keys whose typed values are nearly always refused (a network mode, a user, a signal, a
# target path): clean manifests take values that load, so rich ones are reachable
CLEAN: dict[str, st.SearchStrategy[Any]] = {
    "command": st.sampled_from(["echo hi", ["sleep", "1"]]), "network": st.none(),
    "user": st.none(), "isolation": st.sampled_from(["process", "fake"]),
    "signal": st.sampled_from(["SIGTERM", "INT", 9]),
    "name": st.sampled_from(["p", "web-1"]), "target": st.sampled_from(["/data", "/x"]),
    "inherit_env": st.sampled_from([[], ["LANG"], ["LC_*"]]), "factor": st.floats(1, 100),
    "cpus": st.floats(0.1, 64), "replicas": st.integers(0, 5),
    "volumes": st.just([]), "secrets": st.just([]), "env_file": st.just([]),
}


def shaped(record: type, noisy: bool, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """The record's keys (any subset: an agent's driver blocks too) with typed values;
    ``noisy``: one in four is junk."""
    fields = dict(members(record))
    if not noisy:  # a driver's block on an agent of another level is refused: noisy only
        fields = {k: v for k, v in fields.items() if k not in blocks.names()}
    return st.fixed_dictionaries({}, optional={
        key: st.one_of(_typed(tp, noisy, depth), _typed(tp, noisy, depth),
                       _typed(tp, noisy, depth), values) if noisy
        else CLEAN.get(key, _typed(tp, noisy, depth)) for key, tp in fields.items()})


def _manifest(noisy: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Clean ones are typed all the way down (many load); noisy ones mix in junk anywhere."""
    typed_agent = shaped(Agent, noisy).map(lambda d: {"command": "echo hi", **d})
    agent = st.one_of(typed_agent, st.dictionaries(st.sampled_from(KEYS), values, max_size=8)
                      .map(lambda d: {"command": "echo hi", **d})) if noisy else typed_agent
    names = st.sampled_from(["web", "db", "w-1", "a_b"])
    if noisy:
        names = st.one_of(names, st.text(max_size=12))
        agent = st.one_of(agent, agent, values)
    types_of = dict(members(Manifest))
    top = {key: _typed(types_of[key], noisy) if noisy else CLEAN.get(key, _typed(types_of[key],
                                                                               noisy))
           for key in ("name", "secrets", "logs", "metrics", "version", "state_dir")}
    if noisy:
        top = {key: st.one_of(strategy, values) for key, strategy in top.items()}
    return st.fixed_dictionaries(
        {"agents": st.dictionaries(names, agent, min_size=1, max_size=3)}, optional=top)


manifest = st.one_of(_manifest(False), _manifest(True))


def _yaml(data: Any) -> str:
    try:
        text: str = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=80)
    except (yaml.YAMLError, RecursionError):  # not every value has a YAML form
        return "agents: {w: {command: echo}}\n"
    return text


@st.composite
def mangled(draw: st.DrawFn) -> str:
    """A generated manifest's text, then one text-level mutation."""
    text = _yaml(draw(manifest))
    how = draw(st.sampled_from(["none", "none", "none", "alias", "recursive", "bomb", "nest",
                                "cut", "insert", "merge"]))
    at = draw(st.integers(min_value=0, max_value=len(text)))
    if how == "alias":  # an anchor on top, its alias in place of a value somewhere
        value = _yaml(draw(values)).replace("\n", " ").strip() or "1"
        text = f"x-anchor: &a {{v: {value}}}\n" + text.replace(": ", ": *a #", 1)
    elif how == "recursive":
        text = text.replace(": ", ": &r [1, *r] #", 1)
    elif how == "bomb":
        levels, width = draw(st.integers(2, 12)), draw(st.integers(2, 12))
        lines = [f"x-0: &b0 [{', '.join(['x'] * width)}]"]
        lines += [f"x-{i}: &b{i} [{', '.join([f'*b{i - 1}'] * width)}]"
                  for i in range(1, levels)]
        text = "\n".join(lines) + "\n" + text.replace(": ", f": *b{levels - 1} #", 1)
    elif how == "nest":
        depth = draw(st.integers(1, 400))
        opener = draw(st.sampled_from(["[", "{a: "]))
        closer = "]" if opener == "[" else "}"
        text = text[:at] + opener * depth + "1" + closer * depth + text[at:]
    elif how == "cut":
        text = text[:at]
    elif how == "insert":
        text = text[:at] + draw(st.text(max_size=8)) + text[at:]
    elif how == "merge":
        text = "x-m: &m {a: 1, b: 2}\n" + text.replace(": ", ": {<<: *m} #", 1)
    return text


def _check(loaded: Any) -> None:
    """A manifest that loads also decodes as the daemon decodes it and prints as `config`."""
    if loaded is None:
        return
    assert decode.manifest(decode.dump(loaded)) == loaded
    dump(loaded)


def _load_text(text: str, project: Path) -> Any:
    try:
        return load_text(text, project_dir=project, environ={"A": "1"})
    except ManifestError as exc:
        message = str(exc)
        assert "to check (simplify it)" not in message, "the last resort caught a cause"
        assert all(line.isprintable() for line in message.split("\n")), message
        return None


@FUZZ
@given(text=mangled())
def test_the_loader_never_raises_anything_but_manifest_error(text: str, tmp_path: Path) -> None:
    _check(_load_text(text, tmp_path))


@FUZZ
@given(head=mangled(), noise=st.binary(max_size=16), at=st.integers(min_value=0))
def test_bytes_from_a_file_never_crash_the_loader(
    head: str, noise: bytes, at: int, tmp_path: Path
) -> None:
    data = head.encode()
    at %= len(data) + 1
    (tmp_path / "corral.yaml").write_bytes(data[:at] + noise + data[at:])
    try:
        _check(load(tmp_path / "corral.yaml", environ={}))
    except ManifestError as exc:
        assert "to check (simplify it)" not in str(exc)


def _written(agent: Agent) -> list[str]:
    """The agent's fields that differ from their defaults."""
    blank = Agent(command=["x"])
    return [f.name for f in dataclasses.fields(agent)
            if getattr(agent, f.name) != getattr(blank, f.name)]


def test_the_generator_reaches_valid_manifests_too(tmp_path: Path) -> None:
    """Guards the property against a generator that only ever makes junk: it finds a
    manifest that loads with several keys set on one agent."""

    def rich(text: str) -> bool:
        loaded = _load_text(text, tmp_path)
        return loaded is not None and any(len(_written(a)) >= 6 for a in loaded.agents.values())

    text = find(_manifest(False).map(_yaml), rich,
                settings=settings(max_examples=500, database=None, deadline=None,
                                  suppress_health_check=list(HealthCheck)))
    assert len(text) < files.MAX_BYTES
