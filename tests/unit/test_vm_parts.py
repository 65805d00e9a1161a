"""The vm level's pure parts: console markers, the job script, options, QEMU argv, modules."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from corral.drivers.base import Task
from corral.drivers.vm import initramfs, job, kernel, qemu
from corral.drivers.vm.console import Console
from corral.drivers.vm.driver import Settings, settings
from corral.manifest import validation


class Collect:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self.closed: set[str] = set()

    def feed(self, stream: str, data: bytes) -> None:
        self.data[stream] += data

    def eof(self, stream: str) -> None:
        self.closed.add(stream)


def test_console_holds_boot_chatter_strips_markers_and_keeps_a_tail() -> None:
    out = Collect()
    console = Console(out, "tok")
    raw = (b"SeaBIOS (version 1.16)\r\nBooting from ROM...\r\n\x1bc\x1b[2Jcorral-booted tok\n"
           b"hel", b"lo\nworld\r\ncorral-exit tok 3\n[ 3.1] reboot: Power down\r\n")
    for chunk in raw:
        console.feed("stdout", chunk)
    console.feed("stderr", b"oops\nno newline")
    console.eof("stderr")
    assert out.data["stdout"] == b"hello\nworld\n"
    assert out.data["stderr"] == b"oops\nno newline"
    assert console.booted and console.exit_code == 3
    assert "SeaBIOS (version 1.16)" in console.tail
    assert out.closed == {"stderr"}


def test_console_marker_needs_the_token() -> None:
    out = Collect()
    console = Console(out, "tok", booted=True)
    console.feed("stdout", b"corral-exit other 0\ncorral-booted other\n")
    assert console.exit_code is None
    assert out.data["stdout"] == b"corral-exit other 0\ncorral-booted other\n"


def test_console_tail_names_the_panic_first() -> None:
    console = Console(Collect(), "tok")
    lines = ["[    1.9] VFS: Cannot open root device", "[    2.0] Kernel panic - not syncing: x",
             *[f"[    2.1]  frame {i}" for i in range(30)]]
    console.feed("stdout", "\n".join(lines).encode() + b"\n")
    described = console.describe_tail()
    assert described.startswith("VFS: Cannot open root device | Kernel panic - not syncing")
    assert Console(Collect(), "t").describe_tail() == "the console stayed empty"


def test_job_script_survives_any_value_through_a_real_shell(tmp_path: Path) -> None:
    env = {"A": "it's \"x\" $HOME `id` \\ ;", "B": "line1\nline2", "not-a-name": "skipped"}
    argv = ["sh", "-c", 'printf "%s|" "$0" "$@" "$A" "$B"', "arg 0", "*", ""]
    script = job.script(argv, env, str(tmp_path))
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.stdout == f"arg 0|*||{env['A']}|line1\nline2|"
    assert "not-a-name" not in script


def test_job_write_starts_afresh(tmp_path: Path) -> None:
    share = tmp_path / "share"
    job.write(str(share), argv=["true"], env={}, workdir="/w", network=True)
    job.request_stop(str(share), 15)
    assert (share / "stop-signal").read_text() == "15\n"
    job.write(str(share), argv=["true"], env={}, workdir="/w", network=False)
    assert sorted(p.name for p in share.iterdir()) == ["job.sh", "workdir"]


def _task(vm: object = None, **agent: Any) -> Task:
    raw = {"command": ["true"], "isolation": "vm", **agent}
    spec = validation.agent({**raw, "vm": vm} if vm is not None else raw)
    return Task(project="p", agent="a", instance="a.1", index=1, spec=spec, workdir="/w",
                run_dir="/r", cache_dir="/c", env={})


def test_vm_settings_from_the_decoded_block() -> None:
    assert settings(_task()) == Settings()
    got = settings(_task({"ports": [8080, "18080:80"], "guest": "/g"}))
    assert got.ports == (qemu.Forward(8080, 8080), qemu.Forward(18080, 80))
    assert got.guest == "/g" and not got.network
    got = settings(_task({"ports": [5432], "boot_timeout": "30s"}, network="host"))
    assert got.ports == (qemu.Forward(5432, 5432),) and got.boot_timeout == 30.0
    assert got.network
    with pytest.raises(ValidationError, match=r"ports\.0"):
        _task({"ports": ["http"]})


def test_qemu_argv() -> None:
    m = qemu.Machine(kernel="/g/vmlinuz", initrd="/g/initrd.img", token="t0k",
                     run_share="/run/a,b", workdir="/w", qmp="/run/q.sock", cpus=2,
                     memory_mb=512, forwards=(qemu.Forward(18080, 80),))
    args = qemu.argv(m)
    joined = " ".join(args)
    assert args[:3] == ["qemu-system-x86_64", "-accel", "tcg"]
    assert "-smp 2 -m 512" in joined and "-machine pc" in joined
    assert "corral.token=t0k" in joined
    assert "path=/run/a,,b" in joined  # a comma in a path is escaped for QEMU
    assert "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:18080-:80" in joined
    assert "unix:/run/q.sock,server=on,wait=off" in joined
    small = qemu.argv(qemu.Machine(kernel="k", initrd="i", token="t", run_share="r",
                                   workdir="w", qmp="q", memory_mb=8, accel="kvm"))
    assert "-nic" not in small and small[small.index("-m") + 1] == "64"
    assert small[small.index("-cpu") + 1] == "host"


def _ko(where: Path, name: str, depends: str) -> None:
    (where / f"{name}.ko").write_bytes(b"\x7fELF junk\0license=GPL\0depends=" +
                                       depends.encode() + b"\0name=" + name.encode() + b"\0")


def test_module_load_order_puts_dependencies_first(tmp_path: Path) -> None:
    _ko(tmp_path, "9p", "9pnet,netfs")
    _ko(tmp_path, "9pnet", "")
    _ko(tmp_path, "netfs", "fscache")
    _ko(tmp_path, "fscache", "")
    _ko(tmp_path, "virtio-net", "net_failover")
    _ko(tmp_path, "net_failover", "")
    index = kernel.module_index(str(tmp_path))
    assert "virtio_net" in index
    order = kernel.load_order(["9p", "virtio_net", "builtin_one"], index)
    assert order == ["9pnet", "fscache", "netfs", "9p", "net_failover", "virtio_net"]


def test_initramfs_is_a_reproducible_newc_archive(tmp_path: Path) -> None:
    one = initramfs.initramfs(b"BB", [("m1", b"x" * 5)], "#!/bin/sh\n")
    assert one == initramfs.initramfs(b"BB", [("m1", b"x" * 5)], "#!/bin/sh\n")
    raw = gzip.decompress(one)
    assert raw.startswith(b"070701") and b"TRAILER!!!" in raw
    (tmp_path / "i.cpio").write_bytes(raw)
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed: scripts/install.sh --test installs it")
    with (tmp_path / "i.cpio").open("rb") as archive:
        listed = subprocess.run([busybox, "cpio", "-t"], stdin=archive, capture_output=True,
                                text=True)
    assert listed.returncode == 0, listed.stderr  # the guest's own cpio reads it
    assert {"init", "bin/busybox", "bin/sh", "lib/modules/m1.ko",
            "lib/modules/load"} <= set(listed.stdout.split())


def test_a_kernel_that_cannot_boot_through_pvh_keeps_its_bzimage() -> None:
    import lzma

    assert kernel.unpack_vmlinux(b"MZ no payload") is None
    not_elf = b"MZ setup code" + lzma.compress(b"raw bytes, no ELF", format=lzma.FORMAT_XZ)
    assert kernel.unpack_vmlinux(not_elf) is None
    assert not kernel.has_pvh_entry(b"\x7fELF\x02" + b"\0" * 100)
