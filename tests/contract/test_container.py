"""The container level on real Podman and real Docker: builds, networks, volumes, OOM,
re-adoption and the errors users meet. Engines and base images come from ``support/engines.py``."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest

from corral.drivers.base import Driver, Task
from corral.drivers.container.driver import ContainerDriver
from corral.drivers.container.engine import Engine
from corral.drivers.container.runargs import network_name, volume_name
from corral.drivers.venv import VenvDriver
from corral.errors import DriverError
from corral.manifest import validation
from tests.contract.test_driver_contract import Collect

ENGINES = ["podman", "docker"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    found: Engine = request.getfixturevalue(f"{request.param}_engine")
    return found


def make_task(tmp: Path, raw: dict[str, Any], *, agent: str = "a", project: str = "ct",
              workdir: Path | None = None, container: dict[str, Any] | None = None,
              env: dict[str, str] | None = None, instance: str | None = None) -> Task:
    block = {"container": container} if container is not None else {}
    spec = validation.agent({"isolation": "container", **raw, **block})
    instance = instance or f"{agent}.1"
    work = workdir or tmp / agent
    work.mkdir(parents=True, exist_ok=True)
    return Task(project=project, agent=agent, instance=instance, index=1,
                spec=spec,
                workdir=str(work), run_dir=str(tmp / "run" / instance),
                cache_dir=str(tmp / "cache"), env={"PATH": "/usr/bin:/bin", **(env or {})})


def run(coro: Any, timeout: float = 240) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def run_to_end(driver: Driver, task: Task) -> tuple[int | None, str, str]:
    out = Collect()
    await driver.prepare(task, None)
    handle = await driver.start(task, out)
    result = await driver.wait(handle)
    return result.code, out.text(), out.text("stderr")


PRINT_SIX = "import six, pathlib; print(six.__version__, pathlib.Path('data.txt').read_text())"


def test_venv_agent_switched_to_container_runs_unchanged_with_the_same_pins(
        engine: Engine, tmp_path: Path) -> None:
    """The generated multi-stage build installs the venv level's requirements.txt: the one
    word ``isolation`` changes, the output does not."""
    work = tmp_path / "agent"
    work.mkdir()
    (work / "requirements.txt").write_text("six==1.16.0\n")
    (work / "data.txt").write_text("from the workdir")
    raw = {"command": ["python", "-c", PRINT_SIX], "venv": {"requirements": "requirements.txt"}}

    async def go() -> None:
        venv_task = make_task(tmp_path, {**raw, "isolation": "venv"}, workdir=work)
        venv_code, venv_out, _ = await run_to_end(VenvDriver(), venv_task)
        task = make_task(tmp_path, raw, workdir=work)
        code, out, err = await run_to_end(ContainerDriver(engine), task)
        assert (code, out) == (venv_code, venv_out) == (0, "1.16.0 from the workdir\n"), err

    run(go())


def test_an_unchanged_agent_is_not_rebuilt(engine: Engine, tmp_path: Path) -> None:
    async def go() -> None:
        task = make_task(tmp_path, {"command": ["python", "-c", "print(1)"]})
        (Path(task.workdir) / "app.py").write_text("x = 1\n")
        first = await ContainerDriver(engine).image(task)
        again = Collect()
        assert await ContainerDriver(engine).image(task, again) == first
        assert again.text() == ""  # a lookup: no build step ran
        (Path(task.workdir) / "app.py").write_text("x = 2\n")
        assert await ContainerDriver(engine).image(task) != first

    run(go())


def test_two_agents_reach_each_other_by_name(engine: Engine, tmp_path: Path) -> None:
    server = "import http.server as h; h.HTTPServer(('', 8000), h.SimpleHTTPRequestHandler)" \
             ".serve_forever()"
    client = textwrap.dedent("""
        import time, urllib.request
        for _ in range(100):
            try:
                print(urllib.request.urlopen('http://srv:8000/hello.txt').read().decode())
                break
            except OSError:
                time.sleep(0.1)
    """)

    async def go() -> None:
        driver = ContainerDriver(engine)
        srv = make_task(tmp_path, {"command": ["python", "-c", server]}, agent="srv")
        (Path(srv.workdir) / "hello.txt").write_text("hi from srv")
        cli = make_task(tmp_path, {"command": ["python", "-c", client]}, agent="cli")
        await driver.prepare(srv, None)
        srv_handle = await driver.start(srv, Collect())
        try:
            code, out, err = await run_to_end(driver, cli)
            assert (code, out) == (0, "hi from srv\n"), err
        finally:
            await driver.stop(srv_handle, sig=signal.SIGTERM, timeout=5)
            await driver.wait(srv_handle)
            await engine.run("network", "rm", network_name("ct"))

    run(go())


def test_a_named_volume_survives_re_creation(engine: Engine, tmp_path: Path) -> None:
    count = ("import pathlib; p = pathlib.Path('/data/n'); n = int(p.read_text()) + 1 "
             "if p.exists() else 1; p.write_text(str(n)); print(n)")
    volume = volume_name("ct", "counter")

    async def go() -> None:
        await engine.run("volume", "rm", "-f", volume)
        task = make_task(tmp_path, {"command": ["python", "-c", count], "network": "none",
                                    "volumes": [{"source": str(tmp_path / "vol" / "counter"),
                                                 "target": "/data", "named": True}]})
        try:
            seen = [(await run_to_end(ContainerDriver(engine), task))[1] for _ in range(2)]
            assert seen == ["1\n", "2\n"]
        finally:
            await engine.run("volume", "rm", "-f", volume)

    run(go())


def test_memory_limit_is_reported_as_an_oom_kill(engine: Engine, tmp_path: Path) -> None:
    async def go() -> None:
        hog = "import time; time.sleep(0.3); x = bytearray(400 << 20)"
        task = make_task(tmp_path, {"command": ["python", "-c", hog], "network": "none",
                                    "resources": {"memory": "64m"}})
        driver = ContainerDriver(engine)
        await driver.prepare(task, None)
        result = await driver.wait(await driver.start(task, Collect()))
        assert result.oom_killed, result
        assert result.describe() == "killed: out of memory"

    run(go())


def test_a_new_driver_re_adopts_instead_of_duplicating(engine: Engine, tmp_path: Path) -> None:
    """As after a supervisor SIGKILL: the old driver object is gone without stopping anything;
    a new one re-adopts by labels, keeps the output whole, and never starts a second one."""
    ticker = "import time\nfor i in range(300):\n    print(i, flush=True)\n    time.sleep(0.01)\n"

    async def go() -> None:
        task = make_task(tmp_path, {"command": ["python", "-c", ticker], "network": "none"})
        first_driver, first = ContainerDriver(engine), Collect()
        await first_driver.prepare(task, None)
        handle = await first_driver.start(task, first)
        await asyncio.sleep(1.0)
        for watch in first_driver._watches.values():  # the old supervisor dies
            watch.follower.cancel()
            assert watch.waiter is not None and watch.follower.done is not None
            watch.waiter.cancel()
            await asyncio.gather(watch.follower.done, watch.waiter, return_exceptions=True)
        second_driver, second = ContainerDriver(engine), Collect()
        again = await second_driver.start(task, second)  # a start, not even a recover
        assert again.data["container"] == handle.data["container"]
        labels = {"corral.project": "ct", "corral.instance": task.instance}
        assert len(await engine.containers(labels)) == 1
        assert (await second_driver.wait(again)).code == 0
        numbers = [int(x) for x in (first.text() + second.text()).split()]
        assert numbers == list(range(300))
        assert await engine.containers(labels) == []  # removed once its exit was read

    run(go())


def test_a_failed_build_names_the_failing_step(engine: Engine, tmp_path: Path) -> None:
    async def go() -> None:
        task = make_task(tmp_path, {"command": ["true"]})
        (Path(task.workdir) / "Containerfile").write_text(
            "FROM localhost/corral-python:bookworm\nRUN true\nRUN echo broken-step && exit 3\n")
        with pytest.raises(DriverError) as err:
            await ContainerDriver(engine).prepare(task, None)
        message = str(err.value)
        assert "\n" not in message
        assert re.search(r"(STEP|Step) 3/\d+ ?: RUN echo broken-step && exit 3", message), message

    run(go())


def test_a_missing_image_is_one_clear_line(engine: Engine, tmp_path: Path) -> None:
    async def go() -> None:
        task = make_task(tmp_path, {"command": ["true"]},
                         container={"image": "localhost/no-such-image:1"})
        with pytest.raises(DriverError) as err:
            await ContainerDriver(engine).prepare(task, None)
        assert str(err.value).startswith(
            f"agents.a: image localhost/no-such-image:1 does not exist in {engine.name}; "
            "pulling localhost/no-such-image:1 failed: ")
        assert "\n" not in str(err.value)

    run(go())


def test_an_engine_refusing_to_start_shows_its_own_error(engine: Engine,
                                                         tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]

    async def go() -> None:
        task = make_task(tmp_path, {"command": ["true"]}, container={"ports": [f"{port}:80"]})
        driver = ContainerDriver(engine)
        await driver.prepare(task, None)
        with pytest.raises(DriverError, match=f"{engine.name} could not start the container: "
                                              ".*(address already in use|port is already)"):
            await driver.start(task, Collect())
        labels = {"corral.project": "ct", "corral.instance": task.instance}
        assert await engine.containers(labels) == []  # nothing half-made is left

    try:
        run(go())
    finally:
        taken.close()


def test_secrets_are_files_under_run_secrets(engine: Engine, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "token").write_text("s3cret")
    code = ("import os; d = os.environ['CORRAL_SECRETS_DIR']; "
            "print(d, open(d + '/token').read(), os.environ['GREETING'])")

    async def go() -> None:
        task = make_task(tmp_path, {"command": ["python", "-c", code], "network": "none"},
                         env={"CORRAL_SECRETS_DIR": str(secrets), "GREETING": "hi there"})
        result = await run_to_end(ContainerDriver(engine), task)
        assert result[:2] == (0, "/run/secrets s3cret hi there\n"), result

    run(go())


def test_the_container_gets_the_agents_environment_less_the_hosts_settings(
        engine: Engine, tmp_path: Path) -> None:
    """Locale and what inherit_env names go in; the host's users, paths and runtime dir do
    not (the image has its own), unless the agent names them."""
    code = ("import os; print(sorted(k for k in os.environ if k in {'LANG', 'LC_TIME', "
            "'PYTHONPATH', 'USER', 'LOGNAME', 'SHELL', 'XDG_RUNTIME_DIR', 'TMPDIR', 'ACME'}))")
    host = {"LANG": "C.UTF-8", "LC_TIME": "C", "PYTHONPATH": "/src", "USER": "me",
            "LOGNAME": "me", "SHELL": "/bin/zsh", "XDG_RUNTIME_DIR": "/run/user/1000",
            "TMPDIR": "/home/me/tmp", "ACME": "1"}

    async def go() -> None:
        task = make_task(tmp_path, {"command": ["python", "-c", code], "network": "none",
                                    "inherit_env": ["PYTHONPATH"]}, env=host)
        result = await run_to_end(ContainerDriver(engine), task)
        assert result[:2] == (0, "['ACME', 'LANG', 'LC_TIME', 'PYTHONPATH']\n"), result

    run(go())


def test_stats_come_from_the_container_cgroup(engine: Engine, tmp_path: Path) -> None:
    busy = "import time\nx = bytearray(30 << 20)\nprint('up', flush=True)\ntime.sleep(300)\n"

    async def go() -> None:
        task = make_task(tmp_path, {"command": ["python", "-c", busy], "network": "none"})
        driver, out = ContainerDriver(engine), Collect()
        await driver.prepare(task, None)
        handle = await driver.start(task, out)
        try:
            for _ in range(100):
                if "up" in out.text():
                    break
                await asyncio.sleep(0.05)
            usage = await driver.stats(handle)
            assert usage is not None and usage.rss_bytes > 30 << 20 and usage.processes >= 2
            assert handle.pid is not None and handle.pid > 1
        finally:
            await driver.stop(handle, sig=signal.SIGTERM, timeout=5)
            result = await driver.wait(handle)
        assert result.signal == signal.SIGTERM

    run(go())


def test_a_published_port_answers_on_loopback(engine: Engine, tmp_path: Path) -> None:
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = "import http.server as h; h.HTTPServer(('', 8000), h.SimpleHTTPRequestHandler)" \
             ".serve_forever()"

    async def go() -> None:
        task = make_task(tmp_path, {"command": ["python", "-c", server]}, agent="web",
                         project="ctport", container={"ports": [f"{port}:8000"]})
        (Path(task.workdir) / "index.txt").write_text("published")
        driver = ContainerDriver(engine)
        await driver.prepare(task, None)
        handle = await driver.start(task, Collect())
        try:
            body = ""
            for _ in range(100):
                try:
                    body = await asyncio.to_thread(
                        lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/index.txt",
                                                       timeout=2).read().decode())
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            assert body == "published"
        finally:
            await driver.stop(handle, sig=signal.SIGTERM, timeout=5)
            await driver.wait(handle)
            await engine.run("network", "rm", network_name("ctport"))

    run(go())


def test_stop_kills_the_container_after_the_grace_period(engine: Engine,
                                                          tmp_path: Path) -> None:
    stubborn = textwrap.dedent("""
        import os, signal, subprocess, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        subprocess.Popen(['sleep', '300'], start_new_session=True)
        print('ready', flush=True)
        time.sleep(300)
    """)

    async def go() -> None:
        task = make_task(tmp_path, {"command": ["python", "-c", stubborn], "network": "none"})
        driver, out = ContainerDriver(engine), Collect()
        await driver.prepare(task, None)
        handle = await driver.start(task, out)
        for _ in range(100):
            if "ready" in out.text():
                break
            await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        await driver.stop(handle, sig=signal.SIGTERM, timeout=0.5)
        result = await driver.wait(handle)
        assert asyncio.get_running_loop().time() - started >= 0.5
        assert result.signal == signal.SIGKILL and not result.oom_killed
        assert await engine.containers({"corral.project": "ct",
                                        "corral.instance": task.instance}) == []

    run(go())


def test_lines_printed_while_away_by_an_agent_that_then_exited_are_kept(
        engine: Engine, tmp_path: Path) -> None:
    script = "import time\nfor i in range(50):\n    print(i, flush=True)\n    time.sleep(0.02)\n"

    async def go() -> None:
        task = make_task(tmp_path, {"command": ["python", "-c", script], "network": "none"})
        first_driver, first = ContainerDriver(engine), Collect()
        await first_driver.prepare(task, None)
        handle = await first_driver.start(task, first)
        await asyncio.sleep(0.3)
        for watch in first_driver._watches.values():  # the old supervisor dies
            watch.follower.cancel()
            assert watch.waiter is not None and watch.follower.done is not None
            watch.waiter.cancel()
            await asyncio.gather(watch.follower.done, watch.waiter, return_exceptions=True)
        await asyncio.sleep(1.5)  # the agent finishes meanwhile
        second = Collect()
        assert not await ContainerDriver(engine).recover(handle, second)
        numbers = [int(x) for x in (first.text() + second.text()).split()]
        assert numbers == list(range(50))
        assert await engine.containers({"corral.project": "ct",
                                        "corral.instance": task.instance}) == []

    run(go())
