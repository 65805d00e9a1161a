"""The supervisor builds every instance's environment with corral.environ: its clean base, what
`corral up` sent for inherit_env; a changed inherited value restarts the agent; a restarted
daemon starts agents the same way (credentials excepted: the next `corral up` sends them)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from corral.manifest.loader import load_text
from corral.runtime.events import EventBus
from corral.runtime.store import Store
from corral.runtime.supervisor import Supervisor

MANIFEST = """
name: envs
agents:
  a:
    isolation: fake
    command: fake
    inherit_env: [ACME_*, SA_PW]
    fake: {steps: [{print: [up], sleep: 3600}]}
  b:
    isolation: fake
    command: fake
    fake: {steps: [{print: [up], sleep: 3600}]}
"""
DAEMON = {"PATH": "/bin", "HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/sh",
          "DOCKER_HOST": "unix:///x", "PYTHONPATH": "/src", "LANG": "C.UTF-8"}


def _sup(tmp_path: Path) -> Supervisor:
    (tmp_path / ".corral").mkdir(exist_ok=True)
    return Supervisor(str(tmp_path / ".corral"), store=Store(str(tmp_path / "s.db")),
                      events=EventBus(), base_env=DAEMON)


def test_inherited_values_reach_only_the_naming_agent_and_survive_a_daemon_restart(
        tmp_path: Path) -> None:
    manifest = load_text(MANIFEST, project_dir=str(tmp_path))
    sent = {"ACME_MODE": "dev", "SA_PW": "sa-pw-1234"}

    async def first() -> tuple[dict[str, str], dict[str, str], str, str, bytes]:
        sup = _sup(tmp_path)
        await sup.apply(manifest, secret_env=sent)
        a, b = dict(sup.task("a", 1).env), dict(sup.task("b", 1).env)
        before = sup.spec_hash("a", manifest.agents["a"])
        sup.env.receive({**sent, "ACME_MODE": "prod"})
        after = sup.spec_hash("a", manifest.agents["a"])
        redacted = sup.env.redactor(b"pw is sa-pw-1234")
        await sup.stop()  # not down: that ends the fleet, with nothing left to restore
        await sup.close()
        return a, b, before, after, redacted

    a, b, before, after, redacted = asyncio.run(first())
    assert a["ACME_MODE"] == "dev" and a["SA_PW"] == "sa-pw-1234"
    assert "ACME_MODE" not in b and "SA_PW" not in b
    for env in (a, b):
        assert "DOCKER_HOST" not in env and "PYTHONPATH" not in env  # the daemon's own
        assert env["LANG"] == "C.UTF-8" and env["PATH"] == "/bin"
    assert before != after, "a changed inherited value restarts the agent"
    assert redacted == b"pw is ***", "a credential named by inherit_env is hidden in logs"

    async def restarted() -> dict[str, str]:
        sup = _sup(tmp_path)
        await sup.recover()
        env = dict(sup.task("a", 1).env)
        await sup.close()
        return env

    again = asyncio.run(restarted())
    assert again["ACME_MODE"] == "dev"
    assert "SA_PW" not in again  # never written to the state store
    for path in tmp_path.glob("s.db*"):  # the database and its journal
        assert b"sa-pw-1234" not in path.read_bytes(), path
