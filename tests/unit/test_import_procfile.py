"""``corral import procfile``: the Procfile grammar (foreman's and honcho's), PORT numbering,
the .env beside it, names mapped, one-line errors with the line number, and a manifest that
loads with the same commands the shell would have run."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from corral.convert.imports import procfile
from corral.errors import CorralError, UsageError
from corral.manifest.loader import load


def _args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**{"env_file": None, "name": None, **kw})


def _import(tmp_path: Path, text: str, **kw: object) -> tuple[Path, procfile.Report]:
    path = tmp_path / "Procfile"
    path.write_text(text)
    yaml_text, report = procfile.convert(procfile.find(str(tmp_path)), _args(**kw))
    out = tmp_path / "corral.yaml"
    out.write_text(yaml_text)
    return out, report


def test_each_line_is_a_shell_agent_with_foremans_port(tmp_path: Path) -> None:
    manifest, report = _import(tmp_path, "# the app\n\nweb: gunicorn -b :$PORT app:app\n"
                               "worker:python3 w.py  \n   clock: echo \"${TZ:-UTC}\" '$x'\n")
    m = load(manifest)
    assert list(m.agents) == ["web", "worker", "clock"]
    assert m.agents["web"].argv == ["/bin/sh", "-c", "gunicorn -b :$PORT app:app"]
    assert m.agents["clock"].argv == ["/bin/sh", "-c", "echo \"${TZ:-UTC}\" '$x'"]
    assert [m.agents[n].env["PORT"] for n in m.agents] == ["5000", "5100", "5200"]
    assert ("worker", "PORT", "changed") in [(x.agent, x.field, x.outcome)
                                              for x in report.losses]
    assert "PORT=5000+100*N" in manifest.read_text()


def test_the_env_file_beside_it_is_used_and_sets_the_base_port(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=7000\nDB=postgres://x\n")
    manifest, _ = _import(tmp_path, "web: serve\napi: serve2\n")
    m = load(manifest)
    assert m.agents["web"].env == {"PORT": "7000", "DB": "postgres://x"}
    assert m.agents["api"].env["PORT"] == "7100"
    assert [e.path for e in m.agents["api"].env_file] == [str(tmp_path / ".env")]


def test_an_env_file_given_with_env(tmp_path: Path) -> None:
    other = tmp_path / "conf" / "dev.env"
    other.parent.mkdir()
    other.write_text("MODE=dev\n")
    manifest, _ = _import(tmp_path, "web: serve\n", env_file=str(other))
    assert load(manifest).agents["web"].env["MODE"] == "dev"
    with pytest.raises(UsageError, match=r"--env .*no such file"):
        _import(tmp_path, "web: serve\n", env_file=str(tmp_path / "missing.env"))


def test_names_that_are_not_agent_names_are_mapped_and_reported(tmp_path: Path) -> None:
    manifest, report = _import(tmp_path, "Web: a\nweb: b\n_jobs: c\n", name="shop")
    m = load(manifest)
    assert list(m.agents) == ["web", "web-2", "jobs"]
    assert m.name == "shop"
    fields = {(x.agent, x.field) for x in report.losses if x.field == "name"}
    assert fields == {("web", "name"), ("web-2", "name"), ("jobs", "name")}


@pytest.mark.parametrize(("text", "problem"), [
    ("web: a\nnot a process line\n", r"Procfile:2: not a 'name: command' line"),
    ("web:\n", r"Procfile:1: not a 'name: command' line"),
    ("web: a\n\nweb: b\n", r"Procfile:3: process type 'web' again \(first on line 1\)"),
    ("# only a comment\n", "has no process lines"),
])
def test_bad_lines_are_one_line_errors_with_their_number(tmp_path: Path, text: str,
                                                         problem: str) -> None:
    with pytest.raises(CorralError, match=problem) as caught:
        _import(tmp_path, text)
    assert "\n" not in str(caught.value)


def test_find_takes_the_file_or_the_procfile_of_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no Procfile at"):
        procfile.find(str(tmp_path))
    (tmp_path / "Procfile.dev").write_text("web: a\n")
    assert procfile.find(str(tmp_path / "Procfile.dev")) == str(tmp_path / "Procfile.dev")


def test_an_env_file_that_is_not_text_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: serve $PORT\n")
    (tmp_path / ".env").write_bytes(b"\xff\xfePORT=1\n")
    with pytest.raises(CorralError, match=r"\.env: line 1, column 1: byte 0xff is not UTF-8"):
        procfile.convert(str(tmp_path / "Procfile"), argparse.Namespace(env_file=None,
                                                                        name=None))
