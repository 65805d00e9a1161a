"""Container agents through the real CLI and daemon (Podman): build, up, a daemon SIGKILL and
re-adoption without a duplicate or a lost line, down keeping named volumes, down --volumes."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from corral.drivers.container.engine import Engine
from tests.e2e.conftest import Project
from tests.support.engines import IMAGE

COUNTER = """\
import pathlib, time
runs = pathlib.Path('/state/runs')
runs.write_text(str(int(runs.read_text()) + 1 if runs.exists() else 1))
for i in range(100000):
    print(f"line {i}", flush=True)
    time.sleep(0.005)
"""


def _containers(engine: Engine, project: str) -> list[str]:
    out = subprocess.run(engine.argv("ps", "-a", "-q", "--filter",
                                     f"label=corral.project={project}"),
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def _exists(engine: Engine, kind: str, name: str) -> bool:
    return subprocess.run(engine.argv(kind, "inspect", name), capture_output=True).returncode == 0


def test_container_fleet_survives_a_daemon_sigkill_and_down_keeps_volumes(
        project: Project, podman_engine: Engine) -> None:
    env = {"CORRAL_CONTAINER_ENGINE": "podman"}
    project.file("app/counter.py", COUNTER)
    project.write("""
        name: ctfleet
        agents:
          counter:
            isolation: container
            workdir: app
            command: [python, counter.py]
            volumes: ["state:/state"]
    """)
    built = project.corral("build", env=env)
    assert "counter: localhost/corral-ctfleet-counter:" in built.stdout
    try:
        project.corral("up", "-d", env=env)
        before = project.wait_for(lambda r: r.get("counter.1", {}).get("state") == "running",
                                  what="counter running")
        time.sleep(0.5)
        daemon = project.daemon_pid()
        assert daemon is not None
        os.kill(daemon, signal.SIGKILL)
        time.sleep(1.0)  # the agent keeps printing into the engine's log meanwhile
        project.corral("up", "-d", env=env)
        after = project.ps()
        assert after["counter.1"]["state"] == "running"
        assert after["counter.1"]["started_at"] == pytest.approx(
            before["counter.1"]["started_at"], abs=0.01)
        assert len(_containers(podman_engine, "ctfleet")) == 1  # re-adopted, not duplicated
        time.sleep(0.5)
        down = project.corral("down", env=env)
        assert "removed podman network corral-ctfleet" in down.stdout, down.stdout
        lines = [r["message"] for r in project.records("counter") if r.get("stream") == "stdout"]
        numbers = [int(m.split()[1]) for m in lines if m.startswith("line ")]
        assert numbers == list(range(len(numbers))) and len(numbers) > 200
        assert _containers(podman_engine, "ctfleet") == []
        assert not _exists(podman_engine, "network", "corral-ctfleet")
        assert _exists(podman_engine, "volume", "corral-ctfleet-state")  # kept
        # a re-created container sees the volume's data: the second run counts 2
        project.corral("up", "-d", env=env)
        project.wait_for(lambda r: r.get("counter.1", {}).get("state") == "running",
                         what="counter running again")
        got = project.corral("exec", "counter", "--", "cat", "/state/runs", env=env)
        assert got.stdout == "2"  # corral exec runs inside the agent's container
        down = project.corral("down", "--volumes", env=env)
        assert "removed podman volume corral-ctfleet-state" in down.stdout, down.stdout
        assert not _exists(podman_engine, "volume", "corral-ctfleet-state")
    finally:
        for cid in _containers(podman_engine, "ctfleet"):
            subprocess.run(podman_engine.argv("rm", "-f", "-t", "0", cid), capture_output=True)
        subprocess.run(podman_engine.argv("volume", "rm", "-f", "corral-ctfleet-state"),
                       capture_output=True)


def test_build_failure_is_one_line_and_other_agents_still_build(
        project: Project, podman_engine: Engine) -> None:
    project.file("good/main.py", "print('ok')\n")
    project.file("bad/Containerfile", "FROM localhost/corral-python:bookworm\n"
                                      "RUN echo nope && exit 7\n")
    project.write("""
        name: ctbuild
        agents:
          bad: {isolation: container, workdir: bad, command: ["true"]}
          good: {isolation: container, workdir: good, command: [python, main.py]}
    """)
    got = project.corral("build", check=False, env={"CORRAL_CONTAINER_ENGINE": "podman"})
    assert got.returncode == 5
    errors = [ln for ln in got.stderr.splitlines() if ln.startswith("corral: ")]
    assert len(errors) == 1 and "image build failed at" in errors[0]
    assert "RUN echo nope && exit 7" in errors[0]
    assert "good: localhost/corral-ctbuild-good:" in got.stdout


def _tags(engine: Engine, repo: str) -> list[str]:
    out = subprocess.run(engine.argv("images", "--format", "{{.Repository}}:{{.Tag}}", repo),
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_a_new_build_removes_the_older_image_and_down_rmi_the_rest(
        project: Project, podman_engine: Engine) -> None:
    """Changed files make a new image; the agent's superseded one goes (no pile of images
    per change), other agents' images stay, and `down --rmi` removes the fleet's own."""
    env = {"CORRAL_CONTAINER_ENGINE": "podman"}
    repo = "localhost/corral-ctprune-app"
    project.file("app/Containerfile", f"FROM {IMAGE}\n"
                                      "COPY hello.txt /hello.txt\n")
    project.file("app/hello.txt", "one\n")
    project.write("""
        name: ctprune
        agents:
          app: {isolation: container, workdir: app, command: [cat, /hello.txt]}
    """)
    try:
        project.corral("build", env=env)
        first = _tags(podman_engine, repo)
        assert len(first) == 1, first
        project.file("app/hello.txt", "two\n")
        rebuilt = project.corral("build", env=env)
        second = _tags(podman_engine, repo)
        assert len(second) == 1 and second != first, (first, second)
        assert f"removed {first[0]}: superseded by {second[0]}" in rebuilt.stdout + \
            rebuilt.stderr
        down = project.corral("down", "--rmi", env=env)
        assert f"removed podman image {second[0]}" in down.stdout, down.stdout
        assert _tags(podman_engine, repo) == []
        assert _exists(podman_engine, "image", IMAGE)
    finally:
        for tag in _tags(podman_engine, repo):
            subprocess.run(podman_engine.argv("rmi", "-f", tag), capture_output=True)


def test_a_broken_container_agent_is_fatal_with_its_step_and_others_run(
        project: Project, podman_engine: Engine) -> None:
    project.file("bad/Containerfile", "FROM localhost/corral-python:bookworm\n"
                                      "RUN echo nope && exit 7\n")
    project.file("good/main.py", "import time\nprint('up', flush=True)\ntime.sleep(300)\n")
    project.write("""
        name: ctbroken
        agents:
          bad: {isolation: container, workdir: bad, command: ["true"]}
          good: {isolation: container, workdir: good, command: [python, main.py],
                 network: none}
          plain: {command: [sleep, "300"]}
    """)
    env = {"CORRAL_CONTAINER_ENGINE": "podman"}
    try:
        proc = project.corral("up", "-d", check=False, env=env)
        assert proc.returncode == 1
        rows = project.wait_for(lambda r: r["good.1"]["state"] == "running"
                                and r["plain.1"]["state"] == "running", what="others run")
        assert rows["bad.1"]["state"] == "fatal"
        assert "image build failed at" in rows["bad.1"]["reason"]
        assert "RUN echo nope && exit 7" in rows["bad.1"]["reason"]
        assert "\n" not in rows["bad.1"]["reason"]
        project.corral("down", env=env)
    finally:
        for cid in _containers(podman_engine, "ctbroken"):
            subprocess.run(podman_engine.argv("rm", "-f", "-t", "0", cid), capture_output=True)


def test_corral_run_runs_a_container_agent_attached(project: Project,
                                                    podman_engine: Engine) -> None:
    project.file("app/main.py", "import sys\nprint('args', sys.argv[1:])\n"
                                "print('to err', file=sys.stderr)\nsys.exit(len(sys.argv))\n")
    project.write("""
        name: ctrun
        agents:
          app: {isolation: container, workdir: app, command: [python, main.py], network: none}
    """)
    got = project.corral("run", "app", "--", "python", "main.py", "x", "y", check=False,
                         env={"CORRAL_CONTAINER_ENGINE": "podman"})
    assert got.returncode == 3, got.stderr
    assert got.stdout == "args ['x', 'y']\n"
    assert got.stderr.endswith("to err\n")
    assert _containers(podman_engine, "ctrun") == []  # removed once its exit was read


def test_exec_probes_run_inside_the_container(project: Project, podman_engine: Engine) -> None:
    """A file only the container has makes it healthy: the probe ran in the container, not on
    the host; a dependent on `healthy` starts after it."""
    marker = f"/corral-ready-{os.getpid()}"
    assert not os.path.exists(marker)
    project.write(f"""
        name: ctprobe
        agents:
          svc:
            class: service
            isolation: container
            command: ["sh", "-c", "sleep 1; touch {marker}; sleep 300"]
            container: {{engine: podman, image: "{IMAGE}"}}
            readiness: {{exec: "test -f {marker}", period: 0.3s}}
          after:
            class: compute
            command: ["true"]
            depends_on:
              svc: {{condition: healthy}}
    """)
    try:
        project.corral("up", "-d", env={"CORRAL_CONTAINER_ENGINE": "podman"})
        rows = project.wait_for(lambda r: r["after.1"]["state"] == "exited", timeout=60,
                                what="the dependent to start once the probe passed inside")
        assert rows["svc.1"]["health"] == "healthy"
        assert not os.path.exists(marker), "the probe's file is the container's, not the host's"
    finally:
        project.corral("down", check=False)


def test_the_daemon_runs_one_podman_service_and_leaves_none(project: Project,
                                                            podman_engine: Engine) -> None:
    """Started with the first container, reused by every later start, stopped with the
    daemon: by ``down``, and by the kernel when the daemon is SIGKILLed."""
    from corral.drivers.container import service
    from tests.contract.test_container_api import _alive, _services_of

    if any(os.path.exists(s) for s in service.candidates(podman_engine)):
        pytest.skip("a Podman API socket is already served here: corral starts none")
    env = {"CORRAL_CONTAINER_ENGINE": "podman"}
    project.write(f"""
        name: ctsvc
        agents:
          idle:
            isolation: container
            command: [sleep, "300"]
            network: none
            container: {{image: "{IMAGE}"}}
    """)
    try:
        project.corral("up", "-d", env=env)
        daemon = project.daemon_pid()
        assert daemon is not None
        first = _services_of(daemon)
        assert len(first) == 1
        project.corral("stop", "idle", env=env)
        out = project.corral("start", "--wait", "idle", env=env).stdout
        assert out.startswith("idle.1: running pid "), out
        assert _services_of(daemon) == first  # reused
        project.corral("down", env=env)
        assert not _alive(first[0])
        assert _containers(podman_engine, "ctsvc") == []
        project.corral("up", "-d", env=env)
        daemon = project.daemon_pid()
        assert daemon is not None
        second = _services_of(daemon)
        assert len(second) == 1
        os.kill(daemon, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(second[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(second[0]), "the service outlived the daemon"
        assert len(_containers(podman_engine, "ctsvc")) == 1  # the agent did not
        project.corral("up", "-d", env=env)  # re-adopted through a new service
        assert project.ps()["idle.1"]["state"] == "running"
        assert len(_containers(podman_engine, "ctsvc")) == 1
        project.corral("down", env=env)
    finally:
        for cid in _containers(podman_engine, "ctsvc"):
            subprocess.run(podman_engine.argv("rm", "-f", "-t", "0", cid), capture_output=True)


def test_an_agent_without_a_command_runs_its_images_own(project: Project,
                                                         podman_engine: Engine) -> None:
    """As compose: no ``command`` runs the image's CMD; an image without one is the agent's
    one-line fatal that says so, and the others run on."""
    project.file("app/Containerfile", f'FROM {IMAGE}\n'
                 'CMD ["sh", "-c", "echo from the image CMD; sleep 300"]\n')
    project.file("bare/Containerfile", f"FROM {IMAGE}\nCMD []\n")
    project.write("""
        name: ctcmd
        agents:
          app: {isolation: container, container: {engine: podman, build: app}}
          bare:
            isolation: container
            restart: "no"
            container: {engine: podman, build: bare}
    """)
    env = {"CORRAL_CONTAINER_ENGINE": "podman"}
    try:
        up = project.corral("up", "-d", env=env, timeout=300, check=False)
        assert up.returncode == 1, up.stderr  # an agent is fatal: up says so
        rows = project.wait_for(lambda r: r["app.1"]["state"] == "running"
                                and r["bare.1"]["state"] in ("fatal", "exited"),
                                timeout=120, what="app running and bare ended")
        deadline = time.monotonic() + 30
        while "from the image CMD" not in (logs := project.corral("logs", "app").stdout):
            assert time.monotonic() < deadline, logs
            time.sleep(0.2)
        reason = rows["bare.1"]["reason"]
        assert rows["bare.1"]["state"] == "fatal", rows["bare.1"]
        assert "\n" not in reason and "command" in reason.lower(), reason
    finally:
        project.corral("down", check=False, env=env)
