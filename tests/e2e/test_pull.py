"""Images from a real registry on 127.0.0.1 (``tests/support/registry.py``), through the real
CLI and daemon, with Podman over both transports (its API, its CLI): ``up`` pulls a missing
image with progress, ``pull_policy: never`` refuses in one line, ``always`` follows a tag that
moved, ``corral pull`` pulls, and a registry behind a login is pulled from with the engine's
own credentials (``podman login --authfile``, named by ``REGISTRY_AUTH_FILE``)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.drivers.container.engine import Engine
from tests.e2e.conftest import CORRAL, Project
from tests.support import registry as registries
from tests.support.engines import IMAGE

TRANSPORTS = ["api", "cli"]


def _podman(engine: Engine, *args: str) -> str:
    proc = subprocess.run(engine.argv(*args), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"podman {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def _push(engine: Engine, root: Path, ref: str, version: str, authfile: str = "") -> None:
    """An image of the bootstrapped base with ``/version`` in it, pushed as ``ref``; what the
    engine has under ``ref`` (if anything) is left as it was."""
    ctx = root / f"ctx-{version}"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "version").write_text(version + "\n")
    (ctx / "Containerfile").write_text(f"FROM {IMAGE}\nCOPY version /version\n")
    local = f"localhost/ctpull-src:{version}"
    _podman(engine, "build", "--pull=never", "-q", "-t", local, str(ctx))
    login = ["--authfile", authfile] if authfile else []
    try:
        _podman(engine, "push", "--tls-verify=false", *login, local, ref)
    finally:
        subprocess.run(engine.argv("rmi", local), capture_output=True)


def _absent(engine: Engine, ref: str) -> bool:
    return subprocess.run(engine.argv("image", "exists", ref)).returncode != 0


@pytest.fixture
def local_registry(tmp_path: Path) -> Iterator[registries.Registry]:
    with registries.registry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def login_registry(tmp_path: Path) -> Iterator[registries.Registry]:
    with registries.registry(tmp_path / "registry", auth=True) as reg:
        yield reg


def _manifest(project: Project, ref: str, policy: str) -> None:
    project.write(f"""
        name: ctpull
        agents:
          app:
            isolation: container
            container: {{image: "{ref}", pull_policy: {policy}}}
            command: [cat, /version]
            restart: "no"
            network: none
    """)


def _env(reg: registries.Registry, transport: str, **more: str) -> dict[str, str]:
    return {"CORRAL_CONTAINER_ENGINE": "podman", "CORRAL_CONTAINER_API": transport,
            "CONTAINERS_REGISTRIES_CONF": str(reg.registries_conf), **more}


def _ran(rows: dict[str, dict[str, Any]]) -> bool:
    return rows["app.1"]["state"] == "exited" and rows["app.1"]["exit_code"] == 0


def _output(project: Project) -> list[str]:
    return [r["message"] for r in project.records("app") if "message" in r]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_up_pulls_a_missing_image_never_refuses_and_always_pulls_again(
        project: Project, podman_engine: Engine, local_registry: registries.Registry,
        tmp_path: Path, transport: str) -> None:
    ref = local_registry.ref(f"corral/pulled-{transport}:1")
    env = _env(local_registry, transport)
    try:
        _push(podman_engine, tmp_path, ref, "one")
        assert _absent(podman_engine, ref)

        # never: the image is not here, and nothing is pulled: one line, naming the image
        _manifest(project, ref, "never")
        got = project.corral("up", "-d", check=False, env=env)
        assert got.returncode == 1, got.stdout + got.stderr
        reason = project.ps()["app.1"]["reason"]
        assert f"image {ref} is not in podman and pull_policy is never" in reason
        assert "pull_policy: missing" in reason and "\n" not in reason
        assert _absent(podman_engine, ref)
        project.corral("down", env=env)

        # missing (the default's name): `up` pulls it, the progress is in the agent's log
        _manifest(project, ref, "missing")
        project.corral("up", "-d", env=env)
        project.wait_for(_ran,
                         what="the pulled image ran")
        lines = _output(project)
        assert f"pulling {ref} (podman {transport})" in lines, lines
        assert "one" in lines, lines
        assert not _absent(podman_engine, ref)
        project.corral("down", env=env)

        # always: the tag moved in the registry (the engine still has "one" under it);
        # the next `up` pulls it again and runs the new one
        _push(podman_engine, tmp_path, ref, "two")
        _manifest(project, ref, "always")
        before = len(_output(project))
        project.corral("up", "-d", env=env)
        project.wait_for(_ran, what="the new image ran")
        lines = _output(project)[before:]
        assert f"pulling {ref} (podman {transport})" in lines, lines
        assert "two" in lines and "one" not in lines, lines
        project.corral("down", env=env)
    finally:
        subprocess.run(podman_engine.argv("rmi", "-f", ref), capture_output=True)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_up_to_a_running_fleet_pulls_always_again_and_recreates_what_a_push_moved(
        project: Project, podman_engine: Engine, local_registry: registries.Registry,
        tmp_path: Path, transport: str) -> None:
    """compose's `up` with ``pull_policy: always``: every `up` pulls, also to a daemon that
    runs; an instance whose tag a push moved is recreated on the new image, one whose tag
    did not move is left running."""
    moving = local_registry.ref(f"corral/moving-{transport}:1")
    still = local_registry.ref(f"corral/still-{transport}:1")
    env = _env(local_registry, transport)
    try:
        _push(podman_engine, tmp_path, moving, "one")
        _push(podman_engine, tmp_path, still, "steady")
        project.write(f"""
            name: ctmoved
            agents:
              app:
                isolation: container
                container: {{image: "{moving}", pull_policy: always}}
                command: [sh, -c, "cat /version; exec sleep 600"]
                network: none
              other:
                isolation: container
                container: {{image: "{still}", pull_policy: always}}
                command: [sh, -c, "cat /version; exec sleep 600"]
                network: none
        """)
        project.corral("up", "-d", env=env)
        project.wait_for(lambda rows: "one" in _output(project), what="the first image ran")
        other_pid = project.ps()["other.1"]["pid"]

        again = project.corral("up", "-d", env=env)  # nothing moved: nothing restarts
        assert "app.1" not in again.stdout and "other.1" not in again.stdout, again.stdout
        assert project.ps()["other.1"]["pid"] == other_pid

        _push(podman_engine, tmp_path, moving, "two")  # the registry's tag moves
        moved = project.corral("up", "-d", env=env)
        assert "app.1" in moved.stdout, moved.stdout
        project.wait_for(lambda rows: "two" in _output(project), what="the new image ran")
        rows = project.ps()
        assert rows["app.1"]["state"] == "running", rows
        assert rows["other.1"]["pid"] == other_pid, "an agent whose tag did not move restarted"
        project.corral("down", env=env)
    finally:
        subprocess.run(podman_engine.argv("rmi", "-f", moving, still), capture_output=True)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_registry_behind_a_login_is_pulled_with_the_engines_credentials(
        project: Project, podman_engine: Engine, login_registry: registries.Registry,
        tmp_path: Path, transport: str) -> None:
    """`podman login --authfile` writes the engine's own credentials; with
    ``REGISTRY_AUTH_FILE`` naming that file (Podman's variable) corral's pulls use it, through
    the daemon's (API or CLI) and `corral pull`. Without it the registry refuses, in one line."""
    authfile = tmp_path / "auth.json"
    _podman(podman_engine, "login", "--tls-verify=false", "--authfile", str(authfile),
            "-u", registries.USER, "-p", registries.PASSWORD, login_registry.host)
    nobody = tmp_path / "nobody.json"
    nobody.write_text('{"auths": {}}\n')
    ref = login_registry.ref(f"corral/private-{transport}:1")
    try:
        _push(podman_engine, tmp_path, ref, "private", authfile=str(authfile))
        _manifest(project, ref, "missing")

        refused = project.corral("pull", check=False, env=_env(
            login_registry, transport, REGISTRY_AUTH_FILE=str(nobody)))
        assert refused.returncode == 5, refused.stdout + refused.stderr
        errors = [ln for ln in refused.stderr.splitlines() if ln.startswith("corral: ")]
        assert len(errors) == 1, refused.stderr
        assert f"agents.app: pulling {ref} failed: podman says: " in errors[0], errors
        assert "unauthorized" in errors[0], errors  # the registry's own word
        assert "podman login" in errors[0]
        assert _absent(podman_engine, ref)

        env = _env(login_registry, transport, REGISTRY_AUTH_FILE=str(authfile))
        project.corral("up", "-d", env=env)
        project.wait_for(_ran, what="the private image ran")
        lines = _output(project)
        assert f"pulling {ref} (podman {transport})" in lines and "private" in lines, lines
        project.corral("down", env=env)

        pulled = project.corral("pull", "app", env=env)  # always pulls, even when present
        assert pulled.stdout.startswith(f"app: {ref} ("), pulled.stdout
        progress = [ln for ln in pulled.stderr.splitlines() if ln.startswith("app | ")]
        assert f"app | pulling {ref} (podman cli)" in progress, pulled.stderr
        assert len(progress) > 1, pulled.stderr  # the engine's own lines follow
    finally:
        subprocess.run(podman_engine.argv("rmi", "-f", ref), capture_output=True)


def _docker(engine: Engine, config: Path, *args: str, stdin: str | None = None) -> None:
    proc = subprocess.run([engine.binary, "--config", str(config), *args], input=stdin,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DOCKER_BUILDKIT": "0"})
    assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_docker_pulls_with_the_login_in_its_config(
        project: Project, docker_engine: Engine, login_registry: registries.Registry,
        tmp_path: Path, transport: str) -> None:
    """Docker's daemon knows no login of its own: through its API corral sends the one in
    ``$DOCKER_CONFIG/config.json`` (``X-Registry-Auth``), through its CLI the CLI does.
    (Docker takes a registry on 127.0.0.0/8 as insecure by itself: no configuration.)"""
    config = tmp_path / "docker-config"
    _docker(docker_engine, config, "login", "-u", registries.USER, "--password-stdin",
            login_registry.host, stdin=registries.PASSWORD)
    ref = login_registry.ref(f"corral/docker-{transport}:1")
    local = f"localhost/ctpull-docker-src:{transport}"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "version").write_text("from docker\n")
    (ctx / "Containerfile").write_text(f"FROM {IMAGE}\nCOPY version /version\n")
    try:
        _docker(docker_engine, config, "build", "-q", "-t", local, "-f",
                str(ctx / "Containerfile"), str(ctx))
        _docker(docker_engine, config, "tag", local, ref)
        _docker(docker_engine, config, "push", ref)
        _docker(docker_engine, config, "rmi", local, ref)
        _manifest(project, ref, "missing")
        env = {"CORRAL_CONTAINER_ENGINE": "docker", "CORRAL_CONTAINER_API": transport,
               "DOCKER_CONFIG": str(config)}
        project.corral("up", "-d", env=env)
        project.wait_for(_ran, what="the image docker pulled ran")
        lines = _output(project)
        assert f"pulling {ref} (docker {transport})" in lines and "from docker" in lines, lines
        project.corral("down", env=env)
    finally:
        for tag in (local, ref):
            subprocess.run(docker_engine.argv("rmi", "-f", tag), capture_output=True)


def test_a_build_pulls_what_it_builds_from_as_its_pull_policy_says(
        project: Project, podman_engine: Engine, local_registry: registries.Registry,
        tmp_path: Path) -> None:
    """An agent's own Containerfile FROM a registry's image (the engine's build pulls it, as
    the policy says) and a generated build on a registry's ``container.base`` (corral pulls
    it first, with its progress): `never` refuses both, `missing` pulls both and builds."""
    env = _env(local_registry, "api")
    own_from = local_registry.ref("corral/own:1")
    base = local_registry.ref("corral/python:bookworm")  # the suite names the base's Python
    try:
        _push(podman_engine, tmp_path, own_from, "own")
        _podman(podman_engine, "push", "--tls-verify=false", IMAGE, base)
        project.file("own/Containerfile", f"FROM {own_from}\nRUN cat /version\n")
        project.file("gen/main.py", "print('generated')\n")
        for policy in ("never", "missing"):
            project.write(f"""
                name: ctpullb
                agents:
                  own: {{isolation: container, workdir: own, command: [cat, /version],
                         container: {{pull_policy: {policy}}}}}
                  gen: {{isolation: container, workdir: gen, command: [python, main.py],
                         container: {{base: "{base}", pull_policy: {policy}}}}}
            """)
            got = project.corral("build", check=False, env=env)
            if policy == "never":
                assert got.returncode == 5, got.stdout + got.stderr
                errors = [ln for ln in got.stderr.splitlines() if ln.startswith("corral: ")]
                assert len(errors) == 2, got.stderr
                assert any(f"agents.gen: image {base} is not in podman and pull_policy is "
                           "never" in e for e in errors), errors
                assert any("agents.own: image build failed" in e and own_from in e
                           for e in errors), errors
                assert _absent(podman_engine, base) and _absent(podman_engine, own_from)
        assert got.returncode == 0, got.stdout + got.stderr
        assert f"gen | pulling {base} (podman " in got.stderr, got.stderr
        assert "own: localhost/corral-ctpullb-own:" in got.stdout
        assert "gen: localhost/corral-ctpullb-gen:" in got.stdout
        assert not _absent(podman_engine, base) and not _absent(podman_engine, own_from)
    finally:
        for repo in ("localhost/corral-ctpullb-own", "localhost/corral-ctpullb-gen"):
            for tag in subprocess.run(
                    podman_engine.argv("images", "--format", "{{.Repository}}:{{.Tag}}", repo),
                    capture_output=True, text=True).stdout.split():
                subprocess.run(podman_engine.argv("rmi", "-f", tag), capture_output=True)
        subprocess.run(podman_engine.argv("rmi", own_from), capture_output=True)
        subprocess.run(podman_engine.argv("untag", IMAGE, base), capture_output=True)


def test_pull_names_what_it_cannot_pull_in_one_line(project: Project) -> None:
    project.write("""
        name: ctpullbad
        agents:
          built: {isolation: container, command: ["true"]}
          plain: {command: ["true"]}
    """)
    for args, code, words in [
            (("pull", "nope"), 4, "no agent named 'nope'"),
            (("pull", "plain"), 2, "agent plain has no container.image to pull"),
            (("pull", "built"), 2, "agent built has no container.image to pull")]:
        got = project.corral(*args, check=False)
        assert got.returncode == code, got.stderr
        assert got.stderr.count("\n") == 1 and words in got.stderr, got.stderr
    assert project.corral("pull").stderr == "corral: no container agents with an image to pull\n"
    project.write("""
        name: ctpullbad
        agents:
          app: {isolation: container, container: {image: "x:1", pull_policy: sometimes},
                command: ["true"]}
    """)
    got = project.corral("pull", check=False)
    assert got.returncode == 2
    assert "agents.app.container.pull_policy: 'sometimes' is not one of 'missing', " \
           "'always' or 'never'" in got.stderr, got.stderr


def test_attached_up_shows_the_pull_as_it_happens(
        project: Project, podman_engine: Engine, local_registry: registries.Registry,
        tmp_path: Path) -> None:
    """`up` (attached) prints the pull's progress among the agent's lines, as compose does.
    The container agent waits for a gate that opens only once `up` is seen printing (its
    output is followed live), so the pull cannot happen before `up` listens."""
    ref = local_registry.ref("corral/attached:1")
    gate = tmp_path / "gate-open"
    project.write(f"""
        name: ctpullup
        agents:
          gate:
            command: ["sh", "-c", "while :; do echo waiting; sleep 0.2; done"]
            readiness: {{exec: "test -f {gate}", period: 0.2s}}
          app:
            isolation: container
            container: {{image: "{ref}"}}
            command: [cat, /version]
            restart: "no"
            network: none
            depends_on: {{gate: {{condition: healthy}}}}
    """)
    seen: list[tuple[str, str]] = []
    try:
        _push(podman_engine, tmp_path, ref, "attached")
        proc = subprocess.Popen(
            [*CORRAL, "-f", str(project.manifest), "up", "--no-color"], cwd=project.root,
            env={**os.environ, **_env(local_registry, "api")}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        watchdog = threading.Timer(180, proc.kill)  # a hung `up` fails the test, not CI
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                name, _, message = line.partition("|")
                seen.append((name.strip(), message.strip()))
                if seen[-1] == ("gate.1", "waiting"):
                    gate.touch()
                if seen[-1] == ("app.1", "attached"):
                    break
        finally:
            proc.send_signal(signal.SIGINT)  # as Ctrl-C: the fleet stops, `up` returns
            proc.communicate(timeout=120)
            watchdog.cancel()
        app = [message for name, message in seen if name == "app.1"]
        assert f"pulling {ref} (podman api)" in app, seen
        pulled = app.index(f"pulling {ref} (podman api)")
        assert app[-1] == "attached" and len(app[pulled:]) > 2, app  # the engine's lines too
    finally:
        subprocess.run(podman_engine.argv("rmi", "-f", ref), capture_output=True)
