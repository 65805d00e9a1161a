"""Drivers own their manifest blocks: the registry finds each built-in block without importing
a driver, and finds the same record the driver class declares; the daemon's decoder and the
CLI's validation read one record; the fake's block stays out of the public schema, and a test
can hand the fake its script directly."""

from __future__ import annotations

import asyncio

import pytest

from corral.drivers import registry
from corral.drivers.base import Task
from corral.drivers.fake import FakeDriver, FakeOptions, FakeStep
from corral.errors import ManifestError
from corral.manifest import decode, validation


@pytest.mark.parametrize("name", ["process", "venv", "sandbox", "container", "vm", "fake",
                                  "ray"])
def test_the_registry_table_names_the_records_each_driver_declares(name: str) -> None:
    driver = registry.load(name)
    for key, record in driver.blocks.items():
        assert registry.block(key) is record, (name, key)
    assert set(driver.hidden_blocks) <= set(driver.blocks)


def test_every_block_has_one_owner_and_the_host_env_blocks_are_shared() -> None:
    owners = {key: [n for n in ("venv", "container", "vm", "fake", "ray")
                    if key in registry.load(n).blocks] for key in registry.blocks()}
    assert owners == {"venv": ["venv"], "node": ["venv"], "container": ["container"],
                      "vm": ["vm"], "fake": ["fake"], "ray": ["ray"]}
    # a sandbox agent may have a venv: the sandbox driver reads the same records
    assert registry.load("sandbox").blocks == registry.load("venv").blocks
    assert registry.hidden() == {"fake"}


def test_the_cli_and_the_daemon_decode_a_block_into_the_same_record() -> None:
    raw = {"command": ["x"], "isolation": "fake",
           "fake": {"steps": [{"print": ["a"], "sleep": "1s"}, {"exit": 3}]}}
    validated = validation.agent(raw)
    assert validated.options["fake"] == FakeOptions(steps=[FakeStep(print=["a"], sleep=1.0),
                                                           FakeStep(exit=3)])
    assert decode.agent(decode.dump(validated)) == validated
    with pytest.raises(ManifestError, match=r"agent\.fake\.steps\.0\.exit: 300 is out of range"):
        decode.agent({"command": ["x"], "fake": {"steps": [{"exit": 300}]}})
    with pytest.raises(ManifestError, match=r"agent\.vm\.ports\.0: 'http' is not a port"):
        decode.agent({"command": ["x"], "vm": {"ports": ["http"]}})
    with pytest.raises(ManifestError, match=r"agent\.mars: unknown key"):
        decode.agent({"command": ["x"], "mars": {}})
    with pytest.raises(ManifestError, match=r"agent\.ray\.adress: unknown key"):
        decode.agent({"command": ["x"], "ray": {"adress": "10.0.0.5:6379"}})


def test_the_spec_hash_of_an_agent_without_blocks_is_unchanged() -> None:
    agent = decode.agent({"command": ["x"]})
    text = decode.canonical(agent).decode()
    assert '"stop":{"signal":"SIGTERM","timeout":10.0},"venv":null,"node":null,"vm":null,' \
           '"container":null,"fake":null,"resources"' in text
    assert "options" not in text


class _Out:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def feed(self, stream: str, data: bytes) -> None:
        self.lines.append(data)

    def eof(self, stream: str) -> None:
        pass


def test_a_test_hands_the_fake_its_script() -> None:
    script = FakeOptions(steps=[FakeStep(print=["hi"]), FakeStep(exit=4)])
    driver = FakeDriver(script=script)
    task = Task(project="p", agent="a", instance="a.1", index=1,
                spec=decode.agent({"command": ["fake"], "isolation": "fake"}), workdir="/",
                run_dir="/r", cache_dir="/c", env={})

    async def go() -> int | None:
        out = _Out()
        handle = await driver.start(task, out)
        result = await driver.wait(handle)
        assert out.lines == [b"hi\n"]
        return result.code

    assert asyncio.run(go()) == 4
