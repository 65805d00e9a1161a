"""A driver from outside corral (``tests/support/thirdparty.py``: a package built here and installed
with pip) declares its own block through the ``corral.drivers`` entry point: the CLI validates
the block with paths and "did you mean", ``corral schema`` shows it, ``corral config`` prints
it, and the daemon decodes it and runs the agent with it. The driver contract suite runs it
too (``tests/contract/test_driver_contract.py``)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import Project
from tests.support import thirdparty


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return thirdparty.install(tmp_path_factory.mktemp("tinyexec"))


@pytest.fixture
def env(site: Path) -> Iterator[dict[str, str]]:
    yield {"PYTHONPATH": os.pathsep.join(filter(None, [str(site),
                                                        os.environ.get("PYTHONPATH")])),
           "NO_COLOR": "1"}


def _one_error(project: Project, env: dict[str, str]) -> str:
    proc = project.corral("config", check=False, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def test_the_schema_has_the_installed_drivers_block(project: Project,
                                                    env: dict[str, str]) -> None:
    schema = json.loads(project.corral("schema", env=env).stdout)
    agent = schema["$defs"]["Agent"]["properties"]
    assert agent["tinyexec"]["anyOf"][0] == {"$ref": "#/$defs/TinyOptions"}
    tiny = schema["$defs"]["TinyOptions"]
    assert tiny["additionalProperties"] is False
    assert tiny["properties"]["niceness"]["maximum"] == 19
    assert "tinyexec" in agent["isolation"]["examples"]
    assert "fake" not in agent and "FakeOptions" not in schema["$defs"]
    without = json.loads(project.corral("schema").stdout)  # not installed: not there
    assert "tinyexec" not in without["$defs"]["Agent"]["properties"]


def test_the_block_is_validated_with_did_you_mean(project: Project,
                                                  env: dict[str, str]) -> None:
    project.write("""
        agents:
          w:
            isolation: tinyexec
            command: echo hi
            tinyexec: {interpeter: /bin/sh, niceness: 40}
    """)
    err = _one_error(project, env)
    assert ("agents.w.tinyexec.interpeter: unknown key (did you mean 'interpreter'?)"
            in err), err
    assert "agents.w.tinyexec.niceness: input should be less than or equal to 19" in err, err
    project.write("""
        agents:
          w: {isolation: tinyexec, command: echo hi, tinyexc: {}}
    """)
    assert "agents.w.tinyexc: unknown key (did you mean 'tinyexec'?)" in _one_error(project,
                                                                                     env)
    # without the package, the block is nobody's
    project.write("""
        agents:
          w: {isolation: process, command: echo hi, tinyexec: {}}
    """)
    proc = project.corral("config", check=False)
    assert proc.returncode == 2 and "agents.w.tinyexec: unknown key" in proc.stderr


def test_the_daemon_decodes_the_block_and_runs_the_agent(project: Project,
                                                          env: dict[str, str]) -> None:
    project.write("""
        agents:
          w:
            class: compute
            isolation: tinyexec
            command: echo from $$0
            tinyexec: {interpreter: /bin/sh}
    """)
    printed = yaml.safe_load(project.corral("config", env=env).stdout)
    assert printed["agents"]["w"]["tinyexec"] == {"interpreter": "/bin/sh", "niceness": 0}
    project.corral("up", "-d", env=env)
    try:
        project.wait_for(lambda rows: rows.get("w.1", {}).get("state") == "exited",
                         what="w.1 exited")
        messages = [r.get("message") for r in project.records("w")]
        assert "from /bin/sh" in messages, messages
    finally:
        project.corral("down", env=env, check=False)
