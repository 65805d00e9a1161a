"""Every manifest under manifests/ loads with exactly the problems its comments announce.

Fixture comments: ``# expect: MESSAGE`` (one per expected problem; ``{project}`` stands for the
project directory; none means the file must load), ``# env: KEY=VALUE`` (the environment),
``# file: NAME = "python string literal"`` (a file created next to the manifest).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from corral.errors import ManifestError
from corral.manifest.loader import load

FIXTURES = sorted((Path(__file__).parent / "manifests").glob("*.yaml"))


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_fixture(fixture: Path, tmp_path: Path) -> None:
    text = fixture.read_text()
    env = dict(re.findall(r"^# env: (\w+)=(.*)$", text, re.M))
    for name, content in re.findall(r"^# file: (\S+) = (.*)$", text, re.M):
        (tmp_path / name).write_text(ast.literal_eval(content))
    expected = [
        line.replace("{project}", str(tmp_path))
        for line in re.findall(r"^# expect: (.*)$", text, re.M)
    ]
    (tmp_path / "corral.yaml").write_text(text)
    if not expected:
        load(tmp_path / "corral.yaml", environ=env)
        return
    with pytest.raises(ManifestError) as caught:
        load(tmp_path / "corral.yaml", environ=env)
    assert sorted(caught.value.problems) == sorted(expected)
    assert caught.value.source == str(tmp_path / "corral.yaml")


def test_there_are_fixtures_for_every_rule() -> None:
    names = {f.stem for f in FIXTURES}
    assert len(names) >= 20


def test_error_message_lists_every_problem(tmp_path: Path) -> None:
    (tmp_path / "corral.yaml").write_text(
        "agents:\n  a: {comand: x}\n  b: {command: y, replicas: -1}\n"
    )
    with pytest.raises(ManifestError) as caught:
        load(tmp_path / "corral.yaml", environ={})
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'corral.yaml'}: 2 problems:")
    assert "agents.a.comand: unknown key (did you mean 'command'?)" in message
    assert "agents.b.replicas:" in message
    assert caught.value.exit_code == 2
