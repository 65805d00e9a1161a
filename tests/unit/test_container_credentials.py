"""The engines' stored registry logins, read for an API pull (``containers.credentials``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from corral.drivers.container import credentials
from corral.drivers.container.transport.api import _PullLines, _tagged


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(("ref", "registry"), [
    ("redis:7", "docker.io"), ("library/redis", "docker.io"),
    ("quay.io/podman/hello", "quay.io"), ("127.0.0.1:5000/a/b:1", "127.0.0.1:5000"),
    ("localhost/corral-base:bookworm", "localhost"), ("me/app", "docker.io"),
])
def test_the_registry_of_a_reference_follows_dockers_rule(ref: str, registry: str) -> None:
    assert credentials.registry_of(ref) == registry


def test_podman_reads_registry_auth_file_and_the_header_is_dockers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {
        "127.0.0.1:5000": {"auth": _auth("u", "p:w")},
        "127.0.0.1:5000/team": {"auth": _auth("team", "t")},
        "https://index.docker.io/v1/": {"auth": _auth("hub", "h")}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
    login = credentials.login_for("podman", "127.0.0.1:5000/other/x:1")
    assert login == credentials.Login("u", "p:w", "127.0.0.1:5000")
    # the longest namespace wins, as Podman matches
    assert credentials.login_for("podman", "127.0.0.1:5000/team/x:1") == \
        credentials.Login("team", "t", "127.0.0.1:5000")
    assert credentials.login_for("podman", "redis:7") == credentials.Login("hub", "h",
                                                                           "docker.io")
    assert credentials.login_for("podman", "quay.io/x/y") is None
    assert json.loads(base64.urlsafe_b64decode(login.header())) == {
        "username": "u", "password": "p:w", "serveraddress": "127.0.0.1:5000"}


def test_docker_reads_its_config_and_a_helper_leaves_the_pull_to_the_cli(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "not-dockers.json"))
    (tmp_path / "config.json").write_text(json.dumps({
        "auths": {"reg.example:443": {"auth": _auth("d", "x")}},
        "credHelpers": {"helped.example": "secretservice"}}))
    assert credentials.login_for("docker", "reg.example:443/a") == credentials.Login(
        "d", "x", "reg.example:443")
    with pytest.raises(credentials.NeedsHelper):
        credentials.login_for("docker", "helped.example/a")
    assert credentials.login_for("docker", "elsewhere.example/a") is None


def test_a_pull_reply_is_read_as_it_comes_each_layer_status_once() -> None:
    shown: list[str] = []
    lines = _PullLines(shown.append)
    reply = (b'{"status":"Pulling fs layer","id":"a1"}\n{"status":"Downloading","id":"a1",'
             b'"progressDetail":{"current":1}}\n{"status":"Downloading","id":"a1",'
             b'"progressDetail":{"current":2}}\n{"status":"Pull complete","id":"a1"}\n'
             b'{"error":"manifest unknown","errorDetail":{"message":"manifest unknown"}}\n')
    for at in range(0, len(reply), 7):  # split anywhere, even inside a message
        lines.feed(reply[at:at + 7])
    assert shown == ["a1: Pulling fs layer", "a1: Downloading", "a1: Pull complete"]
    assert lines.error == "manifest unknown"
    assert _tagged("redis") == "redis:latest" and _tagged("127.0.0.1:5000/a") == \
        "127.0.0.1:5000/a:latest"
    assert _tagged("127.0.0.1:5000/a:1") == "127.0.0.1:5000/a:1"
    assert _tagged("a@sha256:00") == "a@sha256:00"
