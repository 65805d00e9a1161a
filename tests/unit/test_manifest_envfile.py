"""dotenv parsing and how env files merge into an agent's env."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.errors import ManifestError
from corral.manifest.dotenv import parse_dotenv
from corral.manifest.loader import load_text
from corral.manifest.spec import Agent, EnvFile


def test_dotenv_rules() -> None:
    text = (
        "# a comment\n"
        "\n"
        "PLAIN=value\n"
        "SPACED = spaced value  \n"
        "export EXPORTED=1\n"
        "INLINE=abc # trailing comment\n"
        "HASH=abc#not-a-comment\n"
        "SINGLE='literal $X \\n # kept'\n"
        'DOUBLE="line1\\nline2 \\"quoted\\" # kept"  # comment\n'
        'MULTI="first\n'
        'second"\n'
        "EMPTY=\n"
        "EMPTY_QUOTES=''\n"
        "BARE\n"
        "DOTTED.KEY-1=x\n"
        "URL=postgres://u:p@h:5432/db?sslmode=require\n"
    )
    values, problems = parse_dotenv(text)
    assert problems == []
    assert values == {
        "PLAIN": "value",
        "SPACED": "spaced value",
        "EXPORTED": "1",
        "INLINE": "abc",
        "HASH": "abc#not-a-comment",
        "SINGLE": "literal $X \\n # kept",
        "DOUBLE": 'line1\nline2 "quoted" # kept',
        "MULTI": "first\nsecond",
        "EMPTY": "",
        "EMPTY_QUOTES": "",
        "BARE": None,
        "DOTTED.KEY-1": "x",
        "URL": "postgres://u:p@h:5432/db?sslmode=require",
    }


def test_dotenv_problems_name_the_line() -> None:
    values, problems = parse_dotenv("A=1\nnot valid\nB='open\nC=3\n")
    assert values == {"A": "1"}
    assert problems[0] == "line 2: expected KEY=VALUE, got 'not valid'"
    assert problems[1].startswith("line 3: unterminated quote")


def test_windows_line_endings() -> None:
    assert parse_dotenv("A=1\r\nB=2\r\n") == ({"A": "1", "B": "2"}, [])


def _agent_env(tmp_path: Path, agent_yaml: str, environ: dict[str, str] | None = None) -> Agent:
    text = f"agents:\n  web:\n{agent_yaml}"
    manifest = load_text(text, project_dir=tmp_path, environ=environ or {})
    return manifest.agents["web"]


def test_env_files_merge_under_explicit_env_in_order(tmp_path: Path) -> None:
    (tmp_path / "base.env").write_text("A=base\nB=base\nC=base\n")
    (tmp_path / "local.env").write_text("B=local\nC=local\n")
    agent = _agent_env(
        tmp_path,
        "    command: run\n    env_file: [base.env, local.env]\n    env: {C: explicit, D: 4}\n",
    )
    assert agent.env == {"A": "base", "B": "local", "C": "explicit", "D": "4"}
    assert agent.env_file == [
        EnvFile(path=str(tmp_path / "base.env")),
        EnvFile(path=str(tmp_path / "local.env")),
    ]


def test_env_file_string_and_optional(tmp_path: Path) -> None:
    (tmp_path / "one.env").write_text("A=1\n")
    agent = _agent_env(
        tmp_path,
        "    command: run\n    env_file: [one.env, {path: nope.env, required: false}]\n",
    )
    assert agent.env == {"A": "1"}
    assert agent.env_file[1] == EnvFile(path=str(tmp_path / "nope.env"), required=False)


def test_env_file_relative_to_project_not_workdir(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "p.env").write_text("WHERE=project\n")
    agent = _agent_env(tmp_path, "    command: run\n    workdir: sub\n    env_file: p.env\n")
    assert agent.env == {"WHERE": "project"}


def test_missing_required_env_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        _agent_env(tmp_path, "    command: run\n    env_file: .env.web\n")
    assert caught.value.problems == [
        f"agents.web.env_file[0]: file not found: {tmp_path / '.env.web'} "
        "(create it or mark it required: false)"
    ]


def test_env_list_form_and_bare_keys(tmp_path: Path) -> None:
    agent = _agent_env(
        tmp_path,
        "    command: run\n    env: [A=1, B=x=y, FROM_SHELL, NOT_SET]\n",
        {"FROM_SHELL": "shell"},
    )
    assert agent.env == {"A": "1", "B": "x=y", "FROM_SHELL": "shell"}


def test_env_map_null_takes_the_shell_value(tmp_path: Path) -> None:
    agent = _agent_env(
        tmp_path, "    command: run\n    env: {FROM_SHELL: , N: 1, T: true}\n", {"FROM_SHELL": "s"}
    )
    assert agent.env == {"FROM_SHELL": "s", "N": "1", "T": "true"}


def test_bare_key_in_env_file(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("TOKEN\nOTHER\n")
    agent = _agent_env(tmp_path, "    command: run\n    env_file: a.env\n", {"TOKEN": "t"})
    assert agent.env == {"TOKEN": "t"}


def test_env_file_values_are_not_interpolated(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("SECRET=pa$word\n")
    agent = _agent_env(tmp_path, "    command: run\n    env_file: a.env\n", {"word": "x"})
    assert agent.env == {"SECRET": "pa$word"}
