"""The vm driver with real QEMU (TCG here): what the shared contract cannot ask of every driver.

Each test boots at most one guest (5-10 s under TCG); the guest is bootstrapped once per
session by ``vm_guest`` (tests/contract/conftest.py) through corral's own bootstrap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from corral.drivers.base import Task
from corral.drivers.vm import qemu, rootfs
from corral.drivers.vm.driver import VmDriver
from corral.errors import DriverError
from corral.manifest import validation

pytestmark = pytest.mark.vm


class Collect:
    def __init__(self) -> None:
        self.data: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    def feed(self, stream: str, data: bytes) -> None:
        self.data[stream] += data

    def eof(self, stream: str) -> None:
        pass

    def text(self, stream: str = "stdout") -> str:
        return self.data[stream].decode()


def _task(tmp: Path, script: str, vm: dict[str, Any] | None = None,
          resources: dict[str, Any] | None = None) -> Task:
    block = {"vm": vm} if vm is not None else {}  # validated, then decoded for the driver
    spec = validation.agent({"command": ["sh", "-c", script], "isolation": "vm",
                                 "resources": resources or {}, **block})
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    return Task(project="t", agent="a", instance="a.1", index=1, spec=spec, workdir=str(work),
                run_dir=str(tmp / "run" / "a.1"), cache_dir=str(tmp / "cache"),
                env={"PATH": "/usr/bin:/bin", "GREETING": "it's \"quoted\" $HOME"})


def run(coro: Any, timeout: float = 90) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _until(check: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_one_shot_shares_the_workdir_env_and_size(vm_guest: str, tmp_path: Path) -> None:
    """The workdir is the same dir at the same path, both ways; env values survive quoting;
    cpus/memory become the VM's size."""
    script = ('echo "$GREETING"; cat input.txt; echo made >output.txt; pwd; nproc; '
              "awk '/MemTotal/ {print ($2 > 300000) ? \"big\" : \"small\"}' /proc/meminfo; "
              "exit 7")

    async def go() -> None:
        task = _task(tmp_path, script, resources={"cpus": 2, "memory": "384M"})
        (tmp_path / "work" / "input.txt").write_text("from the host\n")
        driver, out = VmDriver(), Collect()
        await driver.prepare(task)
        result = await driver.wait(await driver.start(task, out))
        assert result.code == 7 and result.signal is None and not result.success
        assert out.text().splitlines() == [
            "it's \"quoted\" $HOME", "from the host", task.workdir, "2", "big"]
        assert "corral-" not in out.text()
        assert (tmp_path / "work" / "output.txt").read_text() == "made\n"

    run(go())


# its setup may debootstrap the python root: a minute on a quiet machine, over two on a busy one
@pytest.mark.timeout(600)
def test_python_guest_runs_in_the_shared_root_and_leaves_it_untouched(
        vm_python_root: str, tmp_path: Path) -> None:
    script = ('python3 -c "import sys, json; print(json.dumps(sys.argv[1:]))" a "b c"; '
              "touch /usr/lib/corral-probe && echo root-writable")

    async def go() -> None:
        task = _task(tmp_path, script, vm={"python": True})
        driver, out = VmDriver(), Collect()
        await driver.prepare(task)
        result = await driver.wait(await driver.start(task, out))
        assert result.success, (result, out.text("stderr"))
        assert out.text() == '["a", "b c"]\nroot-writable\n'
        assert not os.path.exists(os.path.join(vm_python_root, "usr/lib/corral-probe"))

    run(go())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_service_port_is_forwarded_and_powerdown_stops_it(vm_guest: str,
                                                          tmp_path: Path) -> None:
    port = _free_port()
    script = "echo serving >index.html; echo listening; exec httpd -f -p 8080 -h ."

    async def go() -> None:
        task = _task(tmp_path, script, vm={"ports": [f"{port}:8080"]})
        driver, out = VmDriver(), Collect()
        await driver.prepare(task)
        handle = await driver.start(task, out)
        assert handle.data["ports"] == f"{port}:8080"
        await _until(lambda: "listening" in out.text())

        def get() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as r:
                return str(r.read().decode())

        body = ""
        for _ in range(100):
            try:
                body = await asyncio.to_thread(get)
                break
            except OSError:
                await asyncio.sleep(0.1)
        assert body == "serving\n"
        started = time.monotonic()
        await driver.stop(handle, sig=signal.SIGTERM, timeout=10)
        result = await driver.wait(handle)
        assert time.monotonic() - started < 5  # the power button, not the kill
        assert result.signal == signal.SIGTERM

    run(go())


def test_a_guest_ignoring_the_power_button_is_killed_after_the_grace_period(
        vm_guest: str, tmp_path: Path) -> None:
    async def go() -> None:
        task = _task(tmp_path, "trap '' TERM; echo up; while :; do sleep 1; done")
        driver, out = VmDriver(), Collect()
        await driver.prepare(task)
        handle = await driver.start(task, out)
        await _until(lambda: "up" in out.text())
        started = time.monotonic()
        await driver.stop(handle, sig=signal.SIGTERM, timeout=1.5)
        result = await driver.wait(handle)
        assert 1.5 <= time.monotonic() - started < 6
        assert result.signal == signal.SIGKILL

    run(go())


def test_recover_after_the_driver_is_recreated(vm_guest: str, tmp_path: Path) -> None:
    """A second driver (a restarted daemon) re-attaches to the running VM, reads on without
    a gap, and still gets the job's exit code from the guest."""
    ticker = "i=0; while [ $i -lt 40 ]; do echo $i; i=$((i+1)); sleep 0.05; done; exit 4"

    async def go() -> None:
        task = _task(tmp_path, ticker)
        driver, first = VmDriver(), Collect()
        await driver.prepare(task)
        handle = await driver.start(task, first)
        await _until(lambda: "3\n" in first.text())
        loop = asyncio.get_running_loop()  # the old driver vanishes as in a daemon SIGKILL
        for w in list(driver.launcher.watches.values()):
            for fd in list(w.fds.values()):
                loop.remove_reader(fd)
                os.close(fd)
            loop.remove_reader(w.pidfd)
            w.fds.clear()
        for timer in driver._deadlines.values():
            timer.cancel()
        second_driver, second = VmDriver(), Collect()
        assert await second_driver.recover(handle, second)
        result = await second_driver.wait(handle)
        numbers = [int(x) for x in (first.text() + second.text()).split()]
        assert numbers == list(range(40))
        assert result.code == 4

    run(go())


def _broken_guest(vm_guest: str, where: Path) -> str:
    """A guest whose initramfs is garbage: the kernel panics, no init ever runs."""
    where.mkdir()
    for kernel in ("vmlinuz", "vmlinux"):
        if os.path.exists(os.path.join(vm_guest, kernel)):
            os.symlink(os.path.join(vm_guest, kernel), where / kernel)
    (where / "initrd.img").write_bytes(b"this is not an initramfs\n" * 10)
    meta = json.loads(Path(vm_guest, "guest.json").read_text())
    (where / "guest.json").write_text(json.dumps(meta))
    return str(where)


def test_a_guest_that_does_not_boot_is_reported_with_its_console_tail(
        vm_guest: str, tmp_path: Path) -> None:
    async def go() -> None:
        broken = _broken_guest(vm_guest, tmp_path / "broken")
        task = _task(tmp_path, "echo never", vm={"guest": broken})
        driver, out = VmDriver(), Collect()
        await driver.prepare(task)
        result = await driver.wait(await driver.start(task, out))
        assert result.error is not None and not result.success
        assert "did not boot" in result.error
        assert "Kernel panic" in result.error or "VFS" in result.error
        assert out.text() == ""

    run(go())


def test_boot_timeout_kills_the_vm_and_names_the_console(vm_guest: str,
                                                         tmp_path: Path) -> None:
    async def go() -> None:
        task = _task(tmp_path, "echo late", vm={"boot_timeout": 0.5})
        driver = VmDriver()
        await driver.prepare(task)
        started = time.monotonic()
        result = await driver.wait(await driver.start(task, Collect()))
        assert time.monotonic() - started < 5
        assert result.error is not None
        assert result.error.startswith("the VM guest did not boot within 0.5s; console: ")

    run(go())


def test_missing_qemu_and_missing_guest_are_clear_errors(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> None:
        task = _task(tmp_path, "true", vm={"guest": str(tmp_path / "nowhere")})
        with pytest.raises(DriverError, match="no bootstrapped VM guest") as err:
            await VmDriver().prepare(task)
        assert err.value.fix == "corral vm bootstrap"
        monkeypatch.setattr(qemu, "find", lambda: None)
        with pytest.raises(DriverError, match="QEMU is not installed") as err:
            await VmDriver().start(task, Collect())
        assert err.value.fix == "apt-get install qemu-system-x86"
        health = await VmDriver().check()
        assert not health.available and health.fix == "apt-get install qemu-system-x86"
        monkeypatch.setattr(rootfs, "find", lambda path=None: None)
        python = _task(tmp_path, "true", vm={"python": True})
        with pytest.raises(DriverError, match="no Python root") as err:
            VmDriver._root(python)
        assert err.value.fix == "corral vm bootstrap --python"

    run(go())


def test_cli_bootstrap_is_idempotent_and_prints_the_guest(vm_guest: str) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "corral.cli.main", "vm", "bootstrap"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == vm_guest
    assert "is cached" in done.stderr


def test_qemu_refusing_the_guest_is_reported_with_its_own_words(vm_guest: str,
                                                               tmp_path: Path) -> None:
    async def go() -> None:
        broken = _broken_guest(vm_guest, tmp_path / "broken")
        for kernel in ("vmlinuz", "vmlinux"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(broken, kernel))
        task = _task(tmp_path, "echo never", vm={"guest": broken})
        driver = VmDriver()
        await driver.prepare(task)
        result = await driver.wait(await driver.start(task, Collect()))
        assert result.error is not None and "did not boot" in result.error
        assert "could not open kernel file" in result.error

    run(go())


def test_doctor_row_names_qemu_kvm_guest_and_the_fixes(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.drivers.vm import guest

    async def no_kvm(*_args: Any, **_kw: Any) -> tuple[bool, str]:
        return False, "/dev/kvm does not exist"

    monkeypatch.setattr(qemu, "find", lambda: "/usr/bin/qemu-system-x86_64")
    monkeypatch.setattr(qemu, "probe_kvm", no_kvm)
    monkeypatch.setattr(guest, "find", lambda path=None: None)
    health = run(VmDriver().check())
    assert not health.available and health.fix == "corral vm bootstrap"
    assert "software emulation" in health.detail and "/dev/kvm does not exist" in health.detail
    monkeypatch.setattr(guest, "find", lambda path=None: guest.Guest(
        path="/g", kernel="/g/vmlinux", initrd="/g/initrd.img", kernel_version="6.1"))
    monkeypatch.setattr(rootfs, "find", lambda path=None: None)
    health = run(VmDriver().check())
    assert health.available and "guest /g (kernel 6.1)" in health.detail
    assert "corral vm bootstrap --python" in health.detail
