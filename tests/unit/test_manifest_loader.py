"""Finding the file, class defaults, paths, isolation and the shape of the result."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from corral.errors import CorralError, ManifestError
from corral.manifest.classes import CLASS_DEFAULTS, apply_class_defaults
from corral.manifest.loader import (
    STEPS,
    find_manifest,
    load,
    load_text,
    load_with_warnings,
    project_name,
)
from corral.manifest.spec import Backoff, Manifest

ONE = "agents:\n  web: {command: python app.py}\n"


def _load(tmp_path: Path, text: str, **kwargs: object) -> Manifest:
    return load_text(text, project_dir=tmp_path, environ={}, **kwargs)  # type: ignore[arg-type]


# --- finding the file ---------------------------------------------------------------------


def test_load_from_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "corral.yml").write_text(ONE)
    monkeypatch.chdir(tmp_path)
    manifest = load(environ={})
    assert manifest.project_dir == str(tmp_path)
    assert list(manifest.agents) == ["web"]


def test_corral_yaml_wins_over_yml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "corral.yml").write_text(ONE)
    (tmp_path / "corral.yaml").write_text("agents:\n  api: {command: x}\n")
    monkeypatch.chdir(tmp_path)
    assert list(load(environ={}).agents) == ["api"]


def test_corral_file_variable(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.yaml").write_text(ONE)
    path = find_manifest(environ={"CORRAL_FILE": str(tmp_path / "elsewhere.yaml")})
    assert path == tmp_path / "elsewhere.yaml"
    assert find_manifest(tmp_path) == tmp_path / "corral.yaml"


def test_missing_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CorralError) as caught:
        load(environ={})
    assert caught.value.problem == "manifest not found: corral.yaml"
    assert caught.value.fix == "create one with 'corral init' or pass -f FILE"
    with pytest.raises(CorralError, match=r"manifest not found: .*nope\.yaml"):
        load(tmp_path / "nope.yaml", environ={})


def test_load_with_warnings(tmp_path: Path) -> None:
    (tmp_path / "corral.yaml").write_text("agents:\n  web: {command: echo $X, workdir: gone}\n")
    manifest, warnings = load_with_warnings(tmp_path / "corral.yaml", environ={})
    assert manifest.agents["web"].command == ["echo"]
    assert len(warnings) == 2
    assert warnings[1] == f"agents.web.workdir: directory not found: {tmp_path / 'gone'}"


def test_the_pipeline_order() -> None:
    names = [step.__name__ for step in STEPS]
    assert names == [
        "drop_extensions",
        "interpolate_all",
        "class_defaults",
        "place_agents",
        "resolve_paths",
        "read_env_files",
        "choose_isolation",
        "check_strings",
    ]


# --- class defaults -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "policy"),
    [("compute", "on-failure"), ("io", "always"), ("service", "always"), ("ai", "on-failure")],
)
def test_class_restart_defaults(tmp_path: Path, cls: str, policy: str) -> None:
    text = f"agents:\n  a:\n    class: {cls}\n    command: run\n    readiness: {{tcp: 1}}\n"
    assert _load(tmp_path, text).agents["a"].restart.policy == policy


def test_default_class_is_io_with_backoff(tmp_path: Path) -> None:
    agent = _load(tmp_path, ONE).agents["web"]
    assert agent.class_ == "io"
    assert agent.restart.policy == "always"
    assert agent.restart.backoff == Backoff(initial=1, factor=1.5, max=15, reset_after=30)


def test_user_keys_win_over_class_defaults(tmp_path: Path) -> None:
    text = (
        "agents:\n"
        "  a: {command: run, restart: {max_restarts: 3, backoff: {max: 60}}}\n"
        "  b: {command: run, class: compute, restart: always}\n"
        "  c: {command: run, restart: no}\n"
    )
    agents = _load(tmp_path, text).agents
    assert agents["a"].restart.policy == "always"  # class io, written keys kept
    assert agents["a"].restart.max_restarts == 3
    assert agents["a"].restart.backoff == Backoff(initial=1, factor=1.5, max=60, reset_after=30)
    assert agents["b"].restart.policy == "always"
    assert agents["c"].restart.policy == "no"  # YAML's `no` is False: the model's shortcut


def test_apply_class_defaults_is_pure() -> None:
    data = {"agents": {"a": {"class": "compute", "command": "x"}, "b": None}}
    out = apply_class_defaults(data)
    assert data == {"agents": {"a": {"class": "compute", "command": "x"}, "b": None}}
    assert out["agents"]["a"]["restart"] == CLASS_DEFAULTS["compute"]["restart"]
    assert out["agents"]["b"] is None


def test_service_with_liveness_only_is_fine(tmp_path: Path) -> None:
    text = "agents:\n  db: {class: service, command: x, liveness: {exec: 'true'}}\n"
    assert _load(tmp_path, text).agents["db"].restart.policy == "always"


# --- paths and names ----------------------------------------------------------------------


def test_paths_are_absolute(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    text = "state_dir: var/state\nagents:\n  web: {command: run, workdir: src}\n"
    manifest = _load(tmp_path, text)
    assert manifest.project_dir == str(tmp_path)
    assert manifest.state_dir == str(tmp_path / "var" / "state")
    assert manifest.agents["web"].workdir == str(tmp_path / "src")


def test_default_state_dir_and_workdir(tmp_path: Path) -> None:
    manifest = _load(tmp_path, ONE)
    assert manifest.state_dir == str(tmp_path / ".corral")
    assert manifest.agents["web"].workdir == str(tmp_path)


def test_absolute_and_parent_paths(tmp_path: Path) -> None:
    text = f"state_dir: {tmp_path}/abs\nagents:\n  web: {{command: run, workdir: ../x}}\n"
    manifest = _load(tmp_path / "proj", text)
    assert manifest.state_dir == str(tmp_path / "abs")
    assert manifest.agents["web"].workdir == str(tmp_path / "x")


def test_project_dir_key_moves_relative_paths(tmp_path: Path) -> None:
    manifest = _load(tmp_path, f"project_dir: sub\n{ONE}")
    assert manifest.project_dir == str(tmp_path / "sub")
    assert manifest.state_dir == str(tmp_path / "sub" / ".corral")


@pytest.mark.parametrize(
    ("directory", "name"),
    [("myproj", "myproj"), ("My Project!", "my-project"), ("a.b_c-d", "a-b_c-d"), ("__", "corral")],
)
def test_project_name(directory: str, name: str) -> None:
    assert project_name(Path("/x") / directory) == name


def test_name_key_wins(tmp_path: Path) -> None:
    assert _load(tmp_path, f"name: fleet\n{ONE}").name == "fleet"
    assert _load(tmp_path / "Some Dir", ONE).name == "some-dir"


def test_x_extensions_and_anchors(tmp_path: Path) -> None:
    text = (
        "x-base: &base {class: compute, env: {A: '1'}}\n"
        "agents:\n"
        "  a: {<<: *base, command: run, x-note: ignored}\n"
    )
    agent = _load(tmp_path, text).agents["a"]
    assert agent.class_ == "compute" and agent.env == {"A": "1"}


# --- isolation ----------------------------------------------------------------------------


def test_isolation_defaults(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("requests\n")
    text = "agents:\n  a: {command: run}\n  b: {command: run, venv: {packages: [httpx]}}\n"
    agents = _load(tmp_path, text).agents
    assert agents["a"].isolation == "process" and agents["a"].options.get("venv") is None
    assert agents["b"].isolation == "venv"
    venv = agents["b"].options.get("venv")
    assert venv is not None and venv.packages == ["httpx"]
    assert venv.requirements is None


@pytest.mark.parametrize(
    ("files", "key"),
    [
        (["requirements.txt", "pyproject.toml"], "requirements"),
        (["pyproject.toml"], "pyproject"),
    ],
)
def test_venv_detects_files_in_workdir(tmp_path: Path, files: list[str], key: str) -> None:
    (tmp_path / "bot").mkdir()
    for name in files:
        (tmp_path / "bot" / name).write_text("")
    text = "agents:\n  bot: {command: run, workdir: bot, isolation: venv}\n"
    venv = _load(tmp_path, text).agents["bot"].options.get("venv")
    assert venv is not None
    expected = str(tmp_path / "bot" / ("requirements.txt" if key == "requirements" else files[0]))
    assert getattr(venv, key) == expected


def test_venv_block_paths_are_relative_to_workdir(tmp_path: Path) -> None:
    (tmp_path / "bot" / "deps").mkdir(parents=True)
    (tmp_path / "bot" / "deps" / "req.txt").write_text("")
    text = "agents:\n  bot: {command: run, workdir: bot, venv: {requirements: deps/req.txt}}\n"
    venv = _load(tmp_path, text).agents["bot"].options.get("venv")
    assert venv is not None and venv.requirements == str(tmp_path / "bot" / "deps" / "req.txt")


def test_venv_block_without_files_detects_them(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("")
    text = "agents:\n  b: {command: run, venv: {python: '3.12'}}\n"
    venv = _load(tmp_path, text).agents["b"].options.get("venv")
    assert venv is not None and venv.requirements == str(tmp_path / "requirements.txt")
    assert venv.python == "3.12"


def test_drivers_are_checked_against_the_given_names(tmp_path: Path) -> None:
    text = "agents:\n  a: {command: run, isolation: kube}\n"
    assert _load(tmp_path, text, drivers=["process", "kube"]).agents["a"].isolation == "kube"
    with pytest.raises(ManifestError, match="no driver named 'kube'"):
        _load(tmp_path, text)


# --- result -------------------------------------------------------------------------------


def test_result_is_frozen(tmp_path: Path) -> None:
    manifest = _load(tmp_path, ONE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.name = "other"  # type: ignore[misc]


def test_empty_agents_is_a_valid_manifest(tmp_path: Path) -> None:
    assert _load(tmp_path, "agents: {}\n").agents == {}


def test_text_source_in_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        load_text("[1, 2]", project_dir=tmp_path, source="inline", environ={})
    assert str(caught.value) == "inline: top level: expected a mapping with 'agents:', got a list"


def test_a_sandbox_has_no_network_by_default_whatever_its_class(tmp_path: Path) -> None:
    m = _load(tmp_path, """
        agents:
          scraper: {class: io, isolation: sandbox, command: x}
          db: {class: service, isolation: sandbox, command: x, readiness: {exec: ["true"]}}
          open: {class: io, isolation: sandbox, command: x, network: host}
    """)
    assert m.agents["scraper"].network is None and m.agents["db"].network is None
    assert m.agents["open"].network == "host"


def test_a_host_probe_of_a_sandbox_without_network_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as err:
        _load(tmp_path, """
            agents:
              db: {class: service, isolation: sandbox, command: x, readiness: {tcp: 5432}}
        """)
    assert ("agents.db.readiness: a tcp probe cannot reach a sandbox with network: none "
            "(the default); declare network: host") in str(err.value)
