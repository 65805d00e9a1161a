"""Compose interpolation: ${VAR}, defaults, required, alternates, $VAR, $$, nesting, .env."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.errors import ManifestError
from corral.manifest.loader import load_text
from corral.manifest.variables import Interpolator

VARS = {"SET": "value", "EMPTY": "", "PORT": "8080"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${SET}", "value"),
        ("$SET", "value"),
        ("a-$SET-b", "a-value-b"),
        ("${SET}x", "valuex"),
        ("$SETx", ""),  # the name runs to the last name character, as in compose
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),
        ("${UNSET-fallback}", "fallback"),
        ("${SET:-fallback}", "value"),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${UNSET:-${PORT}}", "8080"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("${UNSET:-a:b}", "a:b"),
        ("$$SET", "$SET"),
        ("$${SET}", "${SET}"),
        ("cost: 5$", "cost: 5$"),
        ("$1 and $ alone", "$1 and $ alone"),
        ("${SET:?never shown}", "value"),
        ("no variables", "no variables"),
    ],
)
def test_substitution(text: str, expected: str) -> None:
    sub = Interpolator(VARS)
    assert sub.text(text, "p") == expected
    assert sub.problems == []


def test_unset_without_default_is_empty_with_one_warning() -> None:
    sub = Interpolator(VARS)
    assert sub.text("${NOPE}/$NOPE", "agents.x.command") == "/"
    assert sub.text("$NOPE", "agents.y.command") == ""  # once per variable, wherever used
    assert sub.warnings == ['The "NOPE" variable is not set. Defaulting to a blank string.']


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("${NOPE:?give me a token}", "required variable NOPE is missing: give me a token"),
        ("${EMPTY:?empty is missing too}", "required variable EMPTY is missing: empty is missing"),
        ("${NOPE?}", "required variable NOPE is missing: set it in the environment or in .env"),
        ("${1X}", "invalid interpolation ${1X}"),
        ("${SET", "unterminated ${"),
    ],
)
def test_problems(text: str, problem: str) -> None:
    sub = Interpolator(VARS)
    sub.text(text, "agents.x.command")
    assert len(sub.problems) == 1
    assert sub.problems[0].startswith(f"agents.x.command: {problem}")


def test_empty_is_set_for_the_dash_forms() -> None:
    sub = Interpolator(VARS)
    assert sub.text("${EMPTY?}", "p") == ""
    assert sub.problems == []


def test_walk_interpolates_values_not_keys() -> None:
    sub = Interpolator(VARS)
    data = {"$SET": ["$SET", 1, True, None, {"k": "${PORT}"}]}
    assert sub.walk(data) == {"$SET": ["value", 1, True, None, {"k": "8080"}]}


def test_required_variable_message_in_a_manifest(tmp_path: Path) -> None:
    text = "agents:\n  x:\n    command: run ${VAR:?err msg}\n"
    with pytest.raises(ManifestError) as caught:
        load_text(text, project_dir=tmp_path, environ={})
    assert caught.value.problems == ["agents.x.command: required variable VAR is missing: err msg"]


def test_list_paths_use_indexes(tmp_path: Path) -> None:
    text = "agents:\n  x:\n    command: [run, '${VAR:?}']\n"
    with pytest.raises(ManifestError) as caught:
        load_text(text, project_dir=tmp_path, environ={})
    assert caught.value.problems[0].startswith("agents.x.command[1]: required variable VAR")


def test_dotenv_in_project_dir_is_overridden_by_the_environment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FROM_FILE=file\nBOTH=file\n# comment\nexport QUOTED='a b'\n")
    text = "agents:\n  x:\n    command: [echo, $FROM_FILE, $BOTH, $QUOTED]\n"
    manifest = load_text(text, project_dir=tmp_path, environ={"BOTH": "env"})
    assert manifest.agents["x"].command == ["echo", "file", "env", "a b"]


def test_default_environ_is_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_TEST_VAR", "from-os")
    manifest = load_text("agents:\n  x: {command: echo $CORRAL_TEST_VAR}\n", project_dir=tmp_path)
    assert manifest.agents["x"].command == ["echo", "from-os"]


def test_warnings_are_returned(tmp_path: Path) -> None:
    warnings: list[str] = []
    text = "agents:\n  x: {command: echo $MISSING}\n"
    manifest = load_text(text, project_dir=tmp_path, environ={}, warnings=warnings)
    assert manifest.agents["x"].command == ["echo"]
    assert warnings == ['The "MISSING" variable is not set. Defaulting to a blank string.']


def test_interpolated_port_shortcut(tmp_path: Path) -> None:
    text = (
        "agents:\n  db:\n    class: service\n    command: redis-server --port ${P}\n"
        "    readiness: {tcp: '${P}'}\n"
    )
    manifest = load_text(text, project_dir=tmp_path, environ={"P": "6380"})
    probe = manifest.agents["db"].readiness
    assert probe is not None and probe.tcp is not None and probe.tcp.port == 6380
