"""One task builder (runtime.tasks) behind the daemon's instances and ``corral run``/``exec``:
the same CORRAL_* variables, dirs, masks and workdir, whoever builds the task."""

from __future__ import annotations

import asyncio
from pathlib import Path

from corral.cli.commands.run_exec import one_off_task
from corral.manifest.loader import load_text
from corral.paths import StateLayout
from corral.runtime.events import EventBus
from corral.runtime.store import Store
from corral.runtime.supervisor import Supervisor

MANIFEST = """
name: tasks
secrets:
  k: {file: ./k.txt}
agents:
  a:
    isolation: fake
    command: fake
    workdir: app
    replicas: 2
    env: {MODE: one}
    fake: {steps: [{print: [up], sleep: 3600}]}
"""
BASE = {"PATH": "/bin", "HOME": "/root", "USER": "root", "LANG": "C.UTF-8"}


def test_the_layout_names_every_dir_under_the_state_dir(tmp_path: Path) -> None:
    layout = StateLayout(str(tmp_path))
    assert layout.run("a.2") == str(tmp_path / "run" / "a.2")
    assert layout.data("a") == str(tmp_path / "data" / "a")
    assert layout.data() == str(tmp_path / "data")
    assert (layout.cache, layout.logs, layout.store) == (
        str(tmp_path / "cache"), str(tmp_path / "logs"), str(tmp_path / "state.db"))
    assert layout.socket == str(tmp_path / "corral.sock")


def test_the_daemon_and_a_one_off_build_the_same_task(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "k.txt").write_text("k-value\n")
    pydantic_manifest = load_text(MANIFEST, project_dir=str(tmp_path))
    state = str(tmp_path / ".corral")

    async def daemons() -> dict[str, object]:
        sup = Supervisor(state, store=Store(str(tmp_path / "s.db")), events=EventBus(),
                         base_env=BASE)
        await sup.apply(pydantic_manifest, secret_env={})
        task = sup.task("a", 2)
        seen = {"env": dict(task.env), "run_dir": task.run_dir, "cache": task.cache_dir,
                "workdir": task.workdir, "masked": task.masked, "index": task.index}
        await sup.down()
        await sup.close()
        return seen

    daemon = asyncio.run(daemons())
    one_off = one_off_task(pydantic_manifest, "a", "a.run")
    env = dict(one_off.env)
    assert daemon["env"]["CORRAL_INSTANCE"] == "a.2"  # type: ignore[index]
    assert env["CORRAL_INSTANCE"] == "a.run" and env["CORRAL_INSTANCE_INDEX"] == "0"
    for name in ("CORRAL_PROJECT", "CORRAL_AGENT", "CORRAL_REPLICAS", "CORRAL_STATE_DIR",
                 "MODE"):
        assert env[name] == daemon["env"][name], name  # type: ignore[index]
    assert env["CORRAL_STATE_DIR"] == StateLayout(state).data("a")
    assert (one_off.workdir, one_off.masked) == (daemon["workdir"], daemon["masked"])
    assert str(tmp_path / "k.txt") in one_off.masked  # a secret source, covered in sandboxes
    assert one_off.cache_dir == daemon["cache"] == StateLayout(state).cache
    assert one_off.run_dir == StateLayout(state).run("a.run")
    assert daemon["run_dir"] == StateLayout(state).run("a.2")
