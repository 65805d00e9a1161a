"""The container level's pure parts: build recipes and digests, options, engine messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral.drivers.container import build
from corral.drivers.container.engine import Engine, Result, find
from corral.drivers.container.options import ContainerOptions, container_options
from corral.drivers.container.runargs import RunSpec, api_body, cli_args, volume_name
from corral.errors import CorralError, ManifestError
from corral.manifest import decode, spec, validation
from corral.manifest.loader import load_text


def test_an_own_containerfile_or_dockerfile_wins(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("six\n")
    assert build.recipe(str(tmp_path)).generated()
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    assert build.recipe(str(tmp_path)).file == str(tmp_path / "Dockerfile")
    (tmp_path / "Containerfile").write_text("FROM y\n")
    assert build.recipe(str(tmp_path)).file == str(tmp_path / "Containerfile")
    with pytest.raises(CorralError, match=r"no Other\.file"):
        build.recipe(str(tmp_path), file="Other.file")


def test_generated_recipe_uses_the_venv_inputs(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("six==1.16.0\n")
    r = build.recipe(str(tmp_path))
    assert r.requirements == (str(tmp_path / "requirements.txt"),)
    assert r.base == "localhost/corral-python:bookworm"
    (tmp_path / "requirements.txt").unlink()
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "1"\ndependencies = ["idna>=3"]\n')
    r = build.recipe(str(tmp_path), packages=("six",), base="localhost/mine:1")
    assert r.pyproject == str(tmp_path) and r.packages == ("six", "idna>=3")
    text = build.containerfile(r)
    assert text.count("FROM localhost/mine:1") == 2 and "--no-index" in text


def test_without_requirements_the_venv_is_made_without_pip(tmp_path: Path) -> None:
    text = build.containerfile(build.recipe(str(tmp_path)))
    assert "python3 -m venv --without-pip /venv" in text and "pip install" not in text


def test_digest_covers_files_but_not_caches_or_vcs(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("x = 1\n")
    first = build.digest(build.recipe(str(tmp_path)))
    for junk in (".git", ".venv", "node_modules", "__pycache__", ".corral"):
        (tmp_path / junk).mkdir()
        (tmp_path / junk / "f").write_text("noise")
    assert build.digest(build.recipe(str(tmp_path))) == first
    (tmp_path / "app.py").write_text("x = 2\n")
    assert build.digest(build.recipe(str(tmp_path))) != first
    assert build.tag_for("My Proj", "web", "ab" * 32) == \
        "localhost/corral-my-proj-web:" + "ab" * 8


def _agent(**raw: Any) -> spec.Agent:
    return decode.agent({"command": ["x"], "isolation": "container", **raw})


def test_the_block_arrives_decoded_with_the_drivers_record() -> None:
    assert container_options(_agent()) == ContainerOptions()
    given = container_options(_agent(container={"image": "localhost/img:1",
                                                "engine": "docker", "ports": ["8080:80"]}))
    assert given == ContainerOptions(image="localhost/img:1", engine="docker",
                                     ports=["8080:80"])
    assert given.build is None
    assert volume_name("p", "data") == "corral-p-data"
    validated = validation.agent({"command": ["x"], "isolation": "container",
                                      "container": {"ports": [8080]}})
    assert container_options(validated).ports == ["8080"]  # the shortcut, once
    with pytest.raises(ManifestError, match=r"agent\.container\.engine: expected one of"):
        _agent(container={"engine": "lxc"})


def test_engine_messages_are_the_engines_own_last_line() -> None:
    docker = Result(125, b"", b"docker: Error response from daemon: port is already allocated."
                              b"\nRun 'docker run --help' for more information\n")
    assert docker.error_line() == "port is already allocated."
    podman = Result(125, b"", b'time="x" level=warning msg="w"\nError: no such image\n')
    assert podman.error_line() == "no such image"


def test_no_engine_is_one_line_with_the_fix(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CORRAL_CONTAINER_ENGINE", raising=False)
    with pytest.raises(CorralError) as err:
        find("auto", path=str(tmp_path))
    assert str(err.value).startswith("no container engine: podman or docker is not installed: ")
    with pytest.raises(CorralError, match="unknown container engine"):
        find("lxc")
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find("auto", path=str(tmp_path)) == Engine("docker", str(fake))  # no podman here


def test_doctor_names_the_fix_for_a_missing_engine_and_missing_settings(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import asyncio

    from corral.drivers.container import doctor

    monkeypatch.setenv("PATH", str(tmp_path))  # neither engine installed
    rows = asyncio.run(doctor.rows())
    assert rows == [("podman", False, "not installed", "apt-get install podman runc"),
                    ("docker", False, "not installed", "apt-get install docker.io")]
    monkeypatch.setattr(doctor, "CONF", str(tmp_path / "none.conf"))
    monkeypatch.delenv("CONTAINERS_CONF", raising=False)
    monkeypatch.setattr(doctor, "_hybrid_or_v1", lambda: True)
    monkeypatch.setattr(doctor.resource, "getrlimit", lambda _: (1024, 20000))
    lines = [line for _, line, _ in doctor.podman_settings()]
    assert lines == ['default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
                     'cgroup_manager = "cgroupfs"', 'events_logger = "file"', 'runtime = "runc"']


def _problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_text(text, project_dir="/tmp")
    return caught.value.problems


def test_a_container_of_an_image_or_build_may_leave_the_command_to_the_image() -> None:
    """compose's services mostly run their image's own CMD: corral's container level too;
    every other level (and a container built from a generated Containerfile) needs one."""
    m = load_text("name: p\nagents:\n  a: {isolation: container, container: {image: redis:7}}\n"
                  "  b: {isolation: container, container: {build: b}}\n", project_dir="/tmp")
    assert m.agents["a"].command == [] and m.agents["a"].argv == []
    assert m.agents["b"].command == []
    assert _problems("name: p\nagents:\n  a: {isolation: container}\n") == [
        "agents.a: command: missing or empty: add 'command: PROGRAM ARGS...', or a "
        "container.image whose own command runs"]
    assert _problems("name: p\nagents:\n  a: {isolation: sandbox}\n") == [
        "agents.a: command: missing or empty: add 'command: PROGRAM ARGS...'"]
    assert _problems("name: p\nagents:\n  a: {command: []}\n") == [
        "agents.a: command: missing or empty: add 'command: PROGRAM ARGS...'"]
    assert _problems("name: p\nagents:\n  a: {isolation: container, shell: true, "
                     "container: {image: i}}\n") == [
        "agents.a: shell: true needs a command to give /bin/sh -c"]
    # the daemon's decoder holds the same line (it never trusts what it is sent)
    assert decode.agent({"isolation": "container", "container": {"image": "i"}}).command == []
    with pytest.raises(ManifestError, match=r"agents\.a: missing command"):
        decode.manifest({"name": "p", "agents": {"a": {"isolation": "process"}}})


def test_no_command_gives_the_engine_no_cmd_so_the_images_own_runs() -> None:
    bare = RunSpec(name="c", image="redis:7", argv=(), labels={}, env={}, network="corral-p")
    assert "Cmd" not in api_body(bare)  # an empty Cmd would be the engine's to interpret
    argv, _ = cli_args(bare, "podman")
    assert argv[-1] == "redis:7"
    given = RunSpec(name="c", image="redis:7", argv=("redis-server", "--port", "1"),
                    labels={}, env={}, network="corral-p")
    assert api_body(given)["Cmd"] == ["redis-server", "--port", "1"]
    assert cli_args(given, "podman")[0][-4:] == ["redis:7", "redis-server", "--port", "1"]
