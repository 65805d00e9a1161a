"""What corral adds over the engine itself, at the container and vm levels, in one run.

Container: `podman run -d` of an idle container (returns once it runs) against corral
starting the same container as an agent until `corral ps` shows it running: cold (`corral up
-d` with no daemon yet) and warm (`corral start` of the stopped agent, the daemon up).
VM: the same one-shot guest run by a bare `qemu-system-x86_64` command line (the kernel,
initramfs and 9p shares corral's driver uses) against `corral up -d` of a one-shot vm agent
until `corral ps` shows it exited. Medians of --runs, interleaved.

    python bench/levels.py [--runs 5] [--out docs/benchmarks.md]

Needs `corral image bootstrap` and `corral vm bootstrap` done (the tests' fixtures do both).
With --out, the report replaces the block between the levels markers in that file.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, emit_block

CORRAL = str(REPO / ".venv" / "bin" / "corral")
IMAGE = "localhost/corral-base:bookworm"
BEGIN, END = "<!-- levels:begin -->", "<!-- levels:end -->"


def _corral(manifest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CORRAL, "-f", str(manifest), *args], capture_output=True,
                          text=True, timeout=600)


def _until(manifest: Path, state: str, t0: float, limit: float = 300) -> float:
    while True:
        rows = json.loads(_corral(manifest, "ps", "--json").stdout or "[]")
        if rows and all(r["state"] == state for r in rows):
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit:
            raise RuntimeError(f"not {state} after {limit:.0f} s: {rows}")
        time.sleep(0.01)


def podman_run(podman: str) -> float:
    t0 = time.monotonic()
    cid = subprocess.run([podman, "run", "-d", "--network=none", IMAGE, "sleep", "3600"],
                         capture_output=True, text=True, check=True).stdout.strip()
    took = time.monotonic() - t0
    subprocess.run([podman, "rm", "-f", "-t", "0", cid], capture_output=True)
    return took


def corral_container(workdir: Path) -> tuple[float, float]:
    manifest = workdir / "corral.yaml"
    manifest.write_text(json.dumps({"name": "lvl", "agents": {"idle": {
        "command": ["sleep", "3600"], "isolation": "container", "network": "none",
        "container": {"engine": "podman", "image": IMAGE}}}}))
    try:
        t0 = time.monotonic()
        _corral(manifest, "up", "-d")
        cold = _until(manifest, "running", t0)
        _corral(manifest, "stop", "idle")
        t0 = time.monotonic()
        _corral(manifest, "start", "idle")
        warm = _until(manifest, "running", t0)
        return cold, warm
    finally:
        _corral(manifest, "down")


def bare_vm(workdir: Path) -> float:
    from corral.vm import guest, job, qemu

    built = guest.bootstrap()
    share = workdir / "share"
    job.write(str(share), argv=["sh", "-c", "echo hello"], env={}, workdir=str(workdir),
              network=False)
    machine = qemu.Machine(kernel=built.kernel, initrd=built.initrd, token="bench0000000000",
                           run_share=str(share), workdir=str(workdir),
                           qmp=str(workdir / "qmp"), accel="tcg")
    argv = qemu.argv(machine, qemu.find() or qemu.QEMU)
    t0 = time.monotonic()
    subprocess.run(argv, capture_output=True, timeout=300, check=False)
    return time.monotonic() - t0


def corral_vm(workdir: Path) -> float:
    manifest = workdir / "corral.yaml"
    manifest.write_text(json.dumps({"name": "lvlvm", "agents": {"once": {
        "class": "compute", "command": ["sh", "-c", "echo hello"], "isolation": "vm",
        "restart": "no"}}}))
    try:
        t0 = time.monotonic()
        _corral(manifest, "up", "-d")
        return _until(manifest, "exited", t0)
    finally:
        _corral(manifest, "down")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out")
    args = ap.parse_args()
    podman, qemu_bin = shutil.which("podman"), shutil.which("qemu-system-x86_64")
    started = datetime.datetime.now(datetime.UTC)
    asyncio.run(_probe_kvm())
    got: dict[str, list[float]] = {}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="corral-levels-") as d:
            work = Path(d)
            if podman:
                got.setdefault("podman run -d", []).append(podman_run(podman))
                cold, warm = corral_container(work)
                got.setdefault("corral container, cold (up -d)", []).append(cold)
                got.setdefault("corral container, warm (start)", []).append(warm)
            if qemu_bin:
                got.setdefault("bare qemu one-shot", []).append(bare_vm(work))
                got.setdefault("corral vm one-shot (up -d)", []).append(corral_vm(work))
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in got.items()),
              file=sys.stderr)
    med = {k: statistics.median(v) for k, v in got.items()}
    command = "python bench/levels.py " + shlex.join(sys.argv[1:])
    lines = [BEGIN, "## Container and vm levels: corral over the engine itself", "",
             f"Produced by `{command}` on {started:%Y-%m-%d %H:%M} UTC, median of "
             f"{args.runs} interleaved runs. Bars: a container agent running within 1.2x of "
             "`podman run -d`; a one-shot vm agent done within 1.2x of bare QEMU.", "",
             "| what | s | vs the engine | bar |", "|---|---:|---:|---|"]
    for name, ref in (("podman run -d", None), ("corral container, cold (up -d)", "podman run -d"),
                      ("corral container, warm (start)", "podman run -d"),
                      ("bare qemu one-shot", None),
                      ("corral vm one-shot (up -d)", "bare qemu one-shot")):
        if name not in med:
            lines.append(f"| {name} | n/a | | engine not installed |")
            continue
        ratio = med[name] / med[ref] if ref and ref in med else None
        verdict = "" if ratio is None else ("reached" if ratio <= 1.2 else "**not reached**")
        lines.append(f"| {name} | {med[name]:.2f} | "
                     f"{'' if ratio is None else f'{ratio:.2f}x'} | {verdict} |")
    emit_block(lines, END, args.out)
    return 0


async def _probe_kvm() -> None:
    from corral.vm import qemu

    await qemu.probe_kvm()  # cached per boot: not inside a timed run


if __name__ == "__main__":
    sys.exit(main())
