"""``corral run`` and ``corral exec`` at every isolation level, through the real CLI: the
agent's exit code passed through, ``-- ARGS`` replacing the whole command (compose's run),
``exec`` in the agent's environment (on the host beside it, or inside its running sandbox or
container). The vm level
is in tests/e2e/test_vm.py (a guest of its own for ``run``; ``exec`` refused in one line).
The generic commands name no level: what differs is each driver's (``Driver.foreground``,
``Driver.enter``)."""

from __future__ import annotations

import pytest

from corral.drivers.container.engine import Engine
from tests.e2e.conftest import Project
from tests.support.engines import IMAGE

JOB = "import os, sys; print('ran', os.environ['CORRAL_INSTANCE'], sys.argv[1:]); sys.exit(3)"
EXTRA = "import sys; print('extra', sys.argv[1:]); sys.exit(4)"
# what tells where the command ran: a sandbox covers corral.yaml with /dev/null
PROBE = 'echo agent=$CORRAL_AGENT; echo manifest=$(cat corral.yaml | wc -c); exit 6'


def _run_and_exec(project: Project, *, inside: bool, env: dict[str, str] | None = None,
                  python: str = "python3") -> None:
    ran = project.corral("run", "job", check=False, env=env, timeout=300)
    assert ran.returncode == 3, ran.stderr
    assert ran.stdout.splitlines()[-1] == "ran job.run []", ran.stdout
    # the whole command, as compose's run
    extra = project.corral("run", "job", "--", python, "-c", EXTRA, "a", "b", check=False,
                           env=env)
    assert extra.returncode == 4, extra.stderr
    assert extra.stdout.splitlines()[-1] == "extra ['a', 'b']", extra.stdout
    project.corral("up", "-d", env=env, timeout=300)
    project.wait_for(lambda r: r["svc.1"]["state"] == "running", what="svc running")
    got = project.corral("exec", "svc", "--", "sh", "-c", PROBE, check=False, env=env)
    assert got.returncode == 6, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0] == "agent=svc", got.stdout
    shown = int(lines[1].removeprefix("manifest="))
    assert shown == 0 if inside else shown > 0, got.stdout
    project.corral("stop", "svc", env=env)


@pytest.mark.parametrize("level", ["process", "venv", "sandbox"])
def test_run_and_exec_on_the_host(project: Project, level: str) -> None:
    python = "python" if level == "venv" else "python3"  # a venv's own interpreter
    project.file("requirements.txt", "# nothing: the venv's own interpreter is enough\n")
    project.write(f"""
        name: levels
        agents:
          job:
            class: compute
            isolation: {level}
            command: [{python}, -c, "{JOB}"]
          svc:
            class: io
            isolation: {level}
            command: sleep 300
    """)
    _run_and_exec(project, inside=level == "sandbox", python=python)
    if level == "sandbox":  # stopped: nothing to enter
        refused = project.corral("exec", "svc", "--", "true", check=False)
        assert refused.returncode == 5
        assert refused.stderr.strip().splitlines() == [
            "corral: agents.svc: no running sandbox to run the command in: "
            "start it first: corral up -d svc"], refused.stderr
    else:  # beside the agent, with or without a running instance
        got = project.corral("exec", "job", "--", "sh", "-c", "echo $CORRAL_INSTANCE; exit 9",
                             check=False)
        assert (got.returncode, got.stdout) == (9, "job.exec\n"), got.stderr


def test_run_and_exec_in_a_container(project: Project, podman_engine: Engine) -> None:
    env = {"CORRAL_CONTAINER_ENGINE": "podman"}
    project.write(f"""
        name: ctlevels
        agents:
          job:
            class: compute
            isolation: container
            container: {{engine: podman, image: "{IMAGE}"}}
            command: [python3, -c, "{JOB}"]
          svc:
            class: io
            isolation: container
            container: {{engine: podman, image: "{IMAGE}"}}
            command: sleep 300
    """)
    try:
        _run_and_exec(project, inside=True, env=env)
        refused = project.corral("exec", "svc", "--", "true", check=False, env=env)
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [
            "corral: agent svc has no running container: start it first with 'corral up -d'"]
    finally:
        project.corral("down", check=False, env=env)
