"""The parts every conversion shares: the report, the export directory writer, the exporter
lookup, and the image an exported agent runs in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from corral.convert import images, output, registry
from corral.convert.base import Bundle
from corral.convert.report import Report
from corral.drivers.container import build
from corral.errors import CorralError, UsageError
from corral.manifest.loader import load


def test_the_report_lists_each_loss_once_per_agent_in_text_and_json() -> None:
    report = Report("export demo")
    report.dropped("web", "liveness.silence", "no equivalent")
    report.dropped("web", "liveness.silence", "no equivalent")
    report.changed(None, "metrics.port", "a Service instead")
    text = report.as_text()
    assert text.splitlines()[0] == "export demo: 1 dropped, 1 carried differently"
    assert "    dropped  liveness.silence: no equivalent" in text
    assert "  (fleet):" in text
    doc = json.loads(report.as_json())
    assert doc["kind"] == "export demo"
    assert doc["losses"] == [
        {"agent": "web", "field": "liveness.silence", "outcome": "dropped",
         "reason": "no equivalent"},
        {"agent": None, "field": "metrics.port", "outcome": "changed",
         "reason": "a Service instead"}]
    assert Report("x").as_text() == "x: every field carried\n"


def _bundle(files: dict[str, str]) -> Bundle:
    return Bundle(Report("export t"), files=files, executable={"run.sh"})


def test_a_new_export_replaces_the_files_of_the_last_but_no_others(tmp_path: Path) -> None:
    out = tmp_path / "out"
    output.write(_bundle({"a.yaml": "a\n", "sub/b.yaml": "b\n", "run.sh": "#!/bin/sh\n"}),
                 str(out), kind="export t")
    assert (out / "sub/b.yaml").read_text() == "b\n"
    assert os.stat(out / "run.sh").st_mode & 0o777 == 0o755
    (out / "mine.txt").write_text("the user's")
    output.write(_bundle({"a.yaml": "a2\n"}), str(out), kind="export t")
    assert (out / "a.yaml").read_text() == "a2\n"
    assert not (out / "sub/b.yaml").exists()  # the last export's, gone with its agent
    assert (out / "mine.txt").read_text() == "the user's"
    with pytest.raises(CorralError, match="holds another export"):
        output.write(_bundle({"a.yaml": ""}), str(out), kind="export other")


def test_a_directory_of_other_files_is_refused_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(CorralError, match="not empty and no export wrote there"):
        output.write(_bundle({"a.yaml": ""}), str(tmp_path), kind="export t")
    output.write(_bundle({"a.yaml": "x"}), str(tmp_path), kind="export t", force=True)
    assert (tmp_path / "notes.txt").read_text() == "keep"


def test_the_writer_never_writes_through_a_link(tmp_path: Path) -> None:
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.write_text("precious")
    output.write(_bundle({"a.yaml": "1"}), str(out), kind="export t")
    (out / "a.yaml").unlink()
    (out / "a.yaml").symlink_to(victim)
    output.write(_bundle({"a.yaml": "2"}), str(out), kind="export t")
    assert victim.read_text() == "precious"
    assert not (out / "a.yaml").is_symlink() and (out / "a.yaml").read_text() == "2"


def test_a_path_out_of_the_directory_is_an_exporters_bug(tmp_path: Path) -> None:
    for bad in ("../x", "/etc/x", "a//b", ""):
        with pytest.raises(AssertionError):
            output.write(_bundle({bad: ""}), str(tmp_path / "o"), kind="export t")


def test_show_prints_one_file_alone_and_several_with_their_names() -> None:
    import io

    one = io.StringIO()
    output.show(_bundle({"Makefile": "all:\n"}), one)
    assert one.getvalue() == "all:\n"
    many = io.StringIO()
    output.show(_bundle({"a.yaml": "kind: A\n", "b.service": "[Unit]\n"}), many)
    assert many.getvalue() == "---\n# file: a.yaml\nkind: A\n# file: b.service\n[Unit]\n"


def test_an_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match=r"no exporter for 'kubernets' \(did you mean "
                                         r"'kubernetes'\?\).*compose, kubernetes, make"):
        registry.load("kubernets")


def _manifest(tmp_path: Path, text: str) -> object:
    (tmp_path / "corral.yaml").write_text(text)
    return load(str(tmp_path / "corral.yaml"))


def test_a_venv_agent_is_built_from_the_containerfile_the_container_level_generates(
        tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w/requirements.txt").write_text("six==1.16.0\n")
    m = _manifest(tmp_path, "name: p\nagents:\n  w:\n    isolation: venv\n    workdir: w\n"
                            "    command: python w.py\n")
    report = Report("export t")
    image = images.for_agent(m, "w", report)  # type: ignore[arg-type]
    assert image.ref == "localhost/corral-p-w:latest" and image.built
    assert image.context == str(tmp_path / "w")
    assert image.containerfile is not None
    assert "COPY requirements.txt /corral/requirements-0.txt" in image.containerfile
    assert f"FROM {images.DEFAULT_BASE} AS venv" in image.containerfile
    assert {x.field for x in report.for_agent("w")} == {"isolation", "container.base"}
    assert images.for_agent(m, "w", Report("t"), registry="reg.example/team/"  # type: ignore[arg-type]
                            ).ref == "reg.example/team/corral-p-w:latest"


def test_a_container_agents_image_is_run_as_is_and_a_host_program_is_reported(
        tmp_path: Path) -> None:
    m = _manifest(tmp_path, "name: p\nagents:\n  r:\n    isolation: container\n"
                            "    command: redis-server\n    container: {image: redis:7}\n"
                            "  s:\n    command: redis-server --port 1\n")
    report = Report("t")
    assert images.for_agent(m, "r", report) == images.Image("redis:7")  # type: ignore[arg-type]
    assert report.losses == []
    images.for_agent(m, "s", report)  # type: ignore[arg-type]
    assert any(x.field == "command" and "'redis-server' must exist" in x.reason
               for x in report.losses)


def test_the_generated_build_from_a_context_installs_a_project_and_packages(
        tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname='a'\nversion='1'\n"
                                             "dependencies=['six']\n")
    r = build.recipe(str(tmp_path), base="b", packages=("rich>=13",))
    text = build.containerfile(r, from_context=True)
    assert "COPY . /corral/project/" in text
    assert "pip install --no-cache-dir --disable-pip-version-check /corral/project 'rich>=13' "\
           "'six'" in text
    assert text.endswith("COPY . /app/\nWORKDIR /app\n" + text.splitlines()[-1] + "\n")
    (tmp_path / "none").mkdir()
    bare = build.containerfile(build.recipe(str(tmp_path / "none"), base="b"),
                               from_context=True)
    assert "RUN python3 -m venv --without-pip /venv" in bare


def test_requirements_outside_the_context_are_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "reqs.txt").write_text("six\n")
    (tmp_path / "app").mkdir()
    r = build.recipe(str(tmp_path / "app"), base="b", requirements="../reqs.txt")
    with pytest.raises(CorralError, match="outside the build context"):
        build.containerfile(r, from_context=True)


def test_a_stream_prints_its_files_and_the_others_as_comments() -> None:
    import io

    import yaml

    bundle = Bundle(Report("t"), files={"m/1.yaml": "kind: A\n", "m/2.yaml": "kind: B\n",
                                        "README.md": "# Build\n\nrun this\n",
                                        "kustomization.yaml": "kind: Kustomization\n"},
                    stream=["m/1.yaml", "m/2.yaml"])
    out = io.StringIO()
    output.show(bundle, out)
    docs = [d for d in yaml.safe_load_all(out.getvalue()) if d is not None]
    assert docs == [{"kind": "A"}, {"kind": "B"}]  # what kubectl apply -f - would read
    assert "# # Build\n#\n# run this\n" in out.getvalue()
    assert "# kind: Kustomization\n" in out.getvalue()
