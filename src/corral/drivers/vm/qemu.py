"""The QEMU command line of one VM agent, the accelerator probe, and the QMP power button.

Accelerator: ``/dev/kvm`` being there and openable proves little (on some hosts it opens and
the guest then never runs a single instruction), so KVM is probed for real: a 512-byte boot
sector that writes a word to the serial port, booted under ``-accel kvm`` with a short timeout.
The answer is cached per process. Without KVM, TCG (software emulation) is used: seconds to boot
instead of a fraction of one, but it works everywhere.

Devices: the default ``pc`` machine (``microvm`` hung about one boot in four on these hosts),
``-nodefaults`` so nothing but what is listed exists, two serial ports (the console + the job's
stdout on ``ttyS0`` → QEMU's stdout; the job's stderr on ``ttyS1`` → QEMU's stderr, opened again
through ``/proc/self/fd/2`` so a restarted supervisor finds both streams in the same named
pipes as a process agent's), two virtio-9p shares and, when ports are forwarded, a virtio NIC
with QEMU's user-mode network (no root, no bridge, the guest reaches out through NAT).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

QEMU = "qemu-system-x86_64"
INSTALL = "apt-get install qemu-system-x86"
MIN_MEMORY_MB = 64  # below it the kernel cannot unpack the initramfs


@dataclass(frozen=True, slots=True)
class Forward:
    """A guest TCP port reachable at ``127.0.0.1:host`` on the host."""

    host: int
    guest: int


@dataclass(frozen=True, slots=True)
class Machine:
    kernel: str
    initrd: str
    token: str
    run_share: str  # host dir shared as the guest's run dir (tag ``corral``)
    workdir: str  # shared at the same path in the guest (tag ``corral-work``)
    qmp: str  # unix socket path
    cpus: int = 1
    memory_mb: int = 256
    forwards: tuple[Forward, ...] = ()
    network: bool = False
    accel: str = "tcg"
    root: str | None = None  # a Debian tree shared read-only as the job's root (tag corral-root)


def find() -> str | None:
    return shutil.which(QEMU)


def argv(m: Machine, qemu: str = QEMU) -> list[str]:
    append = " ".join([
        "console=ttyS0", "loglevel=1", "panic=-1", "edd=off",
        # no time is spent probing hardware a VM agent never has
        "i8042.noaux", "i8042.nokbd",
        f"corral.token={m.token}",
    ])
    args = [
        qemu, "-accel", m.accel, "-machine", "pc", "-cpu", "max" if m.accel == "tcg" else "host",
        "-smp", str(max(1, m.cpus)), "-m", str(max(MIN_MEMORY_MB, m.memory_mb)),
        "-nographic", "-nodefaults", "-no-reboot", "-no-user-config",
        "-serial", "stdio", "-serial", "file:/proc/self/fd/2",
        "-kernel", m.kernel, "-initrd", m.initrd, "-append", append,
        "-qmp", f"unix:{m.qmp},server=on,wait=off",
    ]
    shares = [("corral", m.run_share, "run", ""), ("corral-work", m.workdir, "work", "")]
    if m.root is not None:
        shares.append(("corral-root", m.root, "root", ",readonly=on"))
    for tag, path, fsid, extra in shares:
        args += ["-fsdev", f"local,id={fsid},path={_escape(path)},security_model=none{extra}",
                 "-device", f"virtio-9p-pci,fsdev={fsid},mount_tag={tag}"]
    if m.network or m.forwards:
        nic = "user,model=virtio-net-pci"
        for f in m.forwards:
            nic += f",hostfwd=tcp:127.0.0.1:{f.host}-:{f.guest}"
        args += ["-nic", nic]
    return args


def _escape(value: str) -> str:
    """QEMU option values separate on commas; a literal comma is doubled."""
    return value.replace(",", ",,")


# --- KVM probe ------------------------------------------------------------------------------

_PROBE_WORD = b"KVMOK"
_kvm_cache: tuple[bool, str] | None = None


def _boot_sector() -> bytes:
    code = bytearray(b"\xba\xf8\x03")  # mov dx, 0x3f8 (COM1)
    for ch in _PROBE_WORD:
        code += bytes([0xB0, ch, 0xEE])  # mov al, ch; out dx, al
    code += b"\xfa\xf4\xeb\xfd"  # cli; hlt; jmp $-1
    return bytes(code.ljust(510, b"\0")) + b"\x55\xaa"


async def probe_kvm(qemu: str | None = None, timeout: float = 3.0, *,
                    fresh: bool = False) -> tuple[bool, str]:
    """(usable, why). Boots a boot sector under KVM; usable only if it ran within ``timeout``.

    A hung probe costs its whole timeout, so the answer is kept for the process and on disk
    for the host's boot (``/proc/sys/kernel/random/boot_id``): KVM does not come and go
    between two agent starts; ``fresh`` (doctor) asks again."""
    global _kvm_cache
    if _kvm_cache is not None and not fresh:
        return _kvm_cache
    if not fresh:
        stored = _stored_probe()
        if stored is not None:
            _kvm_cache = stored
            return stored
    qemu = qemu or find()
    if qemu is None:
        return False, f"{QEMU} not found"
    if not os.path.exists("/dev/kvm"):
        _kvm_cache = (False, "/dev/kvm does not exist (no hardware virtualisation here)")
        return _kvm_cache
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not accessible to this user (add it to the kvm group)"
    _kvm_cache = await _boot_probe(qemu, "kvm", timeout)
    _store_probe(_kvm_cache)
    return _kvm_cache


def _probe_file() -> str:
    from corral.drivers.vm.guest import cache_root

    return os.path.join(cache_root(), "vm", "kvm-probe.json")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _stored_probe() -> tuple[bool, str] | None:
    try:
        with open(_probe_file(), encoding="utf-8") as f:
            raw = json.load(f)
        if raw["boot_id"] == _boot_id() and raw["boot_id"]:
            return bool(raw["usable"]), str(raw["why"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _store_probe(answer: tuple[bool, str]) -> None:
    path = _probe_file()
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"boot_id": _boot_id(), "usable": answer[0], "why": answer[1]}, f)
        os.replace(tmp, path)


async def _boot_probe(qemu: str, accel: str, timeout: float) -> tuple[bool, str]:
    with tempfile.NamedTemporaryFile(prefix="corral-kvm-", suffix=".img") as disk:
        disk.write(_boot_sector())
        disk.flush()
        proc = await asyncio.create_subprocess_exec(
            qemu, "-accel", accel, "-machine", "pc", "-nodefaults", "-nographic",
            "-no-user-config", "-serial", "stdio", "-m", "16",
            "-drive", f"file={disk.name},format=raw,if=ide",
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        seen = b""
        hung = False
        try:
            async with asyncio.timeout(timeout):
                while _PROBE_WORD not in seen:
                    chunk = await proc.stdout.read(4096)
                    if not chunk:
                        break
                    seen += chunk
        except TimeoutError:
            hung = True
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            _, err = await proc.communicate()
    if _PROBE_WORD in seen:
        return True, f"{accel} runs guests"
    if hung:
        return False, f"-accel {accel} starts but the guest does not run (hung for {timeout:g}s)"
    reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return False, f"-accel {accel} fails: {reason[0]}"


# --- QMP --------------------------------------------------------------------------------


async def qmp(socket_path: str, commands: Sequence[str], timeout: float = 2.0) -> bool:
    """Run QMP commands (no arguments) in order; False when QEMU is not there to answer."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(socket_path)
            try:
                await reader.readline()  # the greeting
                for command in ("qmp_capabilities", *commands):
                    writer.write(json.dumps({"execute": command}).encode() + b"\n")
                    await writer.drain()
                    while True:  # events may come before the answer
                        reply = json.loads(await reader.readline() or b"{}")
                        if "return" in reply or "error" in reply or not reply:
                            break
                    if "return" not in reply:
                        return False
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError, ValueError):
        return False
    return True
