"""Assemble a minimal guest from Debian's packages: a kernel and a busybox initramfs.

Why an initramfs and no disk image: the guest only has to load a few modules, mount the
agent's workdir over 9p and run one command, so a 2-3 MB gzip'd cpio that the kernel unpacks
into RAM boots fastest and needs no partitioning tools (``corral.drivers.vm.initramfs``).

The guest is content-addressed: its directory under ``CACHE/vm/guests/`` is named by a digest of
the kernel and busybox package versions and of the ``/init`` text, so a new kernel from apt or a
changed init gives a new guest and an old one stays usable by what still runs from it.
``CACHE/vm/guest`` is a symlink to the current one (``bootstrap`` swaps it atomically).

The kernel is the one apt offers now, unpacked for a direct boot, with the modules the guest
loads listed in dependency order (``corral.drivers.vm.kernel``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from corral.drivers.vm import init as guest_init
from corral.drivers.vm.initramfs import initramfs
from corral.drivers.vm.kernel import load_order, module_index, unpack_vmlinux
from corral.errors import DriverError

FORMAT = 2  # bump when the layout of a guest dir changes
KERNEL_META = "linux-image-amd64"
BUSYBOX = "busybox-static"
# What the guest needs: PCI virtio transport, 9p over virtio for the shares, virtio-net for
# user-mode networking, virtio-console, the ACPI power button + evdev for a clean stop, and
# overlay to give a guest with a shared read-only Debian root a writable view of it.
MODULES = ("virtio_pci", "9pnet_virtio", "9p", "virtio_net", "virtio_console", "button",
           "evdev", "overlay")
FIX = "corral vm bootstrap"

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Guest:
    """A bootstrapped guest directory: what QEMU boots."""

    path: str
    kernel: str
    initrd: str
    kernel_version: str

    @classmethod
    def load(cls, path: str) -> Guest:
        meta_path = os.path.join(path, "guest.json")
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            raise DriverError(f"no bootstrapped VM guest at {path}", FIX) from None
        kernel = str(meta.get("kernel", "vmlinuz"))
        return cls(path=os.path.realpath(path), kernel=os.path.join(path, kernel),
                   initrd=os.path.join(path, "initrd.img"),
                   kernel_version=str(meta.get("kernel_version", "")))


def cache_root() -> str:
    """``$XDG_CACHE_HOME/corral`` (``~/.cache/corral``): guests are shared by every project."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "corral")


def default_path() -> str:
    return os.path.join(cache_root(), "vm", "guest")


def find(path: str | None = None) -> Guest | None:
    """The guest at ``path`` (default: the cached one), or None when none is bootstrapped."""
    try:
        return Guest.load(path or default_path())
    except DriverError:
        return None


# --- Debian packages --------------------------------------------------------------------


def _run(argv: list[str], cwd: str | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise DriverError(f"{argv[0]} not found: the VM guest is built from Debian packages",
                          "run corral vm bootstrap on Debian or Ubuntu (apt-get)") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        raise DriverError(f"{' '.join(argv[:3])} failed: {tail[0]}",
                          "run apt-get update, then corral vm bootstrap again")
    return done.stdout


def kernel_package() -> str:
    """The versioned kernel package apt offers now (what ``linux-image-amd64`` depends on)."""
    for line in _run(["apt-cache", "depends", KERNEL_META]).splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "Depends" and value.startswith("linux-image-"):
            return value.strip("<>")
    raise DriverError(f"apt offers no {KERNEL_META}", "run apt-get update")


def package_version(name: str) -> str:
    for line in _run(["apt-cache", "show", "--no-all-versions", name]).splitlines():
        if line.startswith("Version: "):
            return line.split(": ", 1)[1].strip()
    raise DriverError(f"apt offers no {name}", "run apt-get update")


def _download(name: str, into: str) -> str:
    _run(["apt-get", "download", "-q", name], cwd=into)
    debs = [f for f in os.listdir(into) if f.startswith(f"{name}_") and f.endswith(".deb")]
    if not debs:
        raise DriverError(f"apt-get download {name} gave no package", "run apt-get update")
    return os.path.join(into, debs[0])


def _extract(deb: str, into: str) -> None:
    _run(["dpkg-deb", "-x", deb, into])


# --- bootstrap --------------------------------------------------------------------------


def digest(kernel_pkg: str, kernel_ver: str, busybox_ver: str) -> str:
    h = hashlib.sha256()
    for part in (str(FORMAT), kernel_pkg, kernel_ver, busybox_ver, guest_init.SCRIPT,
                 ",".join(MODULES)):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def bootstrap(*, force: bool = False, progress: Progress | None = None,
              root: str | None = None) -> Guest:
    """Build (or find cached) the guest for what apt offers now; idempotent."""
    say = progress or (lambda _msg: None)
    root = root or os.path.join(cache_root(), "vm")
    kernel_pkg = kernel_package()
    key = digest(kernel_pkg, package_version(kernel_pkg), package_version(BUSYBOX))
    target = os.path.join(root, "guests", key)
    if not force and os.path.exists(os.path.join(target, "guest.json")):
        _point(root, target)
        say(f"guest {key} is cached")
        return Guest.load(target)
    os.makedirs(os.path.join(root, "guests"), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bootstrap-", dir=root) as work:
        say(f"downloading {kernel_pkg} and {BUSYBOX} from apt")
        kernel_deb = _download(kernel_pkg, work)
        busybox_deb = _download(BUSYBOX, work)
        tree = os.path.join(work, "tree")
        say("unpacking the kernel")
        _extract(kernel_deb, tree)
        _extract(busybox_deb, tree)
        boot = os.path.join(tree, "boot")
        vmlinuz = next(f for f in os.listdir(boot) if f.startswith("vmlinuz-"))
        version = vmlinuz[len("vmlinuz-"):]
        modules_dir = os.path.join(tree, "lib", "modules", version)
        order = load_order(MODULES, module_index(modules_dir))
        index = module_index(modules_dir)
        say(f"packing the initramfs (busybox, {len(order)} modules: {' '.join(order)})")
        busybox = Path(tree, "bin", "busybox").read_bytes()
        image = initramfs(busybox, [(m, Path(index[m]).read_bytes()) for m in order],
                          guest_init.SCRIPT)
        staging = os.path.join(work, "guest")
        os.makedirs(staging)
        shutil.copyfile(os.path.join(boot, vmlinuz), os.path.join(staging, "vmlinuz"))
        say("unpacking the kernel's ELF for a direct (PVH) boot")
        elf = unpack_vmlinux(Path(boot, vmlinuz).read_bytes())
        if elf is not None:
            Path(staging, "vmlinux").write_bytes(elf)
        Path(staging, "initrd.img").write_bytes(image)
        meta = {"format": FORMAT, "kernel_package": kernel_pkg, "kernel_version": version,
                "kernel": "vmlinuz" if elf is None else "vmlinux",
                "modules": order, "key": key}
        Path(staging, "guest.json").write_text(json.dumps(meta, indent=1) + "\n")
        if os.path.exists(target):
            shutil.rmtree(target)
        os.replace(staging, target)
    _point(root, target)
    say(f"guest {key} built")
    return Guest.load(target)


def _point(root: str, target: str) -> None:
    """Swap ``ROOT/guest`` to ``target`` atomically (a rename over the old link)."""
    link = os.path.join(root, "guest")
    if os.path.islink(link) and os.readlink(link) == os.path.relpath(target, root):
        return
    tmp = f"{link}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(os.path.relpath(target, root), tmp)
    os.replace(tmp, link)

