"""What corral adds over the engine itself, at the container and vm levels, in one run.

Container: `podman run -d` of an idle container (it returns once the container runs) against
corral starting the same container as an agent and returning once it runs. Warm, the bar's
measure: `corral start --wait idle` of the stopped agent, the daemon up; the timed span ends
when that command returns, and its reply is the daemon's status row saying `running` (the
"status confirms"). A `corral ps --json` then confirms it again, outside the timed span; the
row "warm + confirming ps" also counts that ps (one more CLI process, ~30-60 ms). Cold
(informational): `corral up -d` with no daemon yet, which returns once the fleet settled,
likewise confirmed by a ps outside the span. Each run measures `podman run -d` twice, next to
the cold and next to the warm start, so both see the same load.
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
import os
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
PODMAN = "podman run -d"
COLD = "corral container, cold (up -d)"
WARM = "corral container, warm (start --wait)"
WARM_PS = "corral container, warm + confirming ps"
API = "podman API create+start (corral's requests alone)"
OWN = "corral start --wait of a process agent (corral alone)"
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


def _confirm_running(manifest: Path) -> None:
    rows = json.loads(_corral(manifest, "ps", "--json").stdout or "[]")
    if not rows or any(r["state"] != "running" for r in rows):
        raise RuntimeError(f"corral ps does not confirm running: {rows}")


def corral_container(workdir: Path, podman: str) -> dict[str, float]:
    manifest = workdir / "corral.yaml"
    manifest.write_text(json.dumps({"name": "lvl", "agents": {"idle": {
        "command": ["sleep", "3600"], "isolation": "container", "network": "none",
        "container": {"engine": "podman", "image": IMAGE}}}}))
    got: dict[str, float] = {}
    try:
        got[PODMAN] = podman_run(podman)
        t0 = time.monotonic()
        up = _corral(manifest, "up", "-d")
        got[COLD] = time.monotonic() - t0
        if up.returncode != 0:
            raise RuntimeError(f"corral up -d failed: {up.stdout}{up.stderr}")
        _confirm_running(manifest)
        _corral(manifest, "stop", "idle")
        got[PODMAN + " "] = podman_run(podman)
        t0 = time.monotonic()
        start = _corral(manifest, "start", "--wait", "idle")
        got[WARM] = time.monotonic() - t0
        if start.returncode != 0 or not start.stdout.startswith("idle.1: running"):
            raise RuntimeError(f"corral start --wait: {start.stdout}{start.stderr}")
        _confirm_running(manifest)
        got[WARM_PS] = time.monotonic() - t0
        return got
    finally:
        _corral(manifest, "down")


def api_start(podman: str) -> float:
    """The engine's part of a warm start: the requests corral's driver sends (create, start,
    inspect), timed in-process against a Podman service, no CLI on either side."""
    from corral.drivers.container import service
    from corral.drivers.container.engine import Engine
    from corral.drivers.container.runargs import RunSpec
    from corral.drivers.container.transport import auto as ops

    async def go() -> float:
        api = await ops.for_engine(Engine("podman", podman))
        if api.via != "api":
            raise RuntimeError("no Podman API here")
        spec = RunSpec(name="corral-bench-api", image=IMAGE, argv=("sleep", "3600"),
                       labels={}, env={}, network="none")
        await api.remove(spec.name)
        t0 = time.monotonic()
        cid = await api.run(spec, cwd="/")
        await api.state(cid)
        took = time.monotonic() - t0
        await api.remove(cid)
        return took

    try:
        return asyncio.run(go())
    finally:
        service.close_all()


def corral_alone(workdir: Path) -> float:
    """`corral start --wait` of a process agent: the CLI, the daemon and a fork/exec, the
    part of a warm container start that is corral's own."""
    (workdir / "own").mkdir(exist_ok=True)
    manifest = workdir / "own" / "corral.yaml"
    manifest.write_text(json.dumps({"name": "lvlown",
                                    "agents": {"idle": {"command": ["sleep", "3600"]}}}))
    try:
        _corral(manifest, "up", "-d")
        _corral(manifest, "stop", "idle")
        t0 = time.monotonic()
        start = _corral(manifest, "start", "--wait", "idle")
        took = time.monotonic() - t0
        if not start.stdout.startswith("idle.1: running"):
            raise RuntimeError(f"corral start --wait: {start.stdout}{start.stderr}")
        return took
    finally:
        _corral(manifest, "down")


def bare_vm(workdir: Path) -> float:
    from corral.drivers.vm import guest, job, qemu

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
    load_before = os.getloadavg()[0]
    asyncio.run(_probe_kvm())
    got: dict[str, list[float]] = {}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="corral-levels-") as d:
            work = Path(d)
            if podman:
                for name, took in corral_container(work, podman).items():
                    got.setdefault(name.strip(), []).append(took)
                got.setdefault(API, []).append(api_start(podman))
                got.setdefault(OWN, []).append(corral_alone(work))
            if qemu_bin:
                got.setdefault("bare qemu one-shot", []).append(bare_vm(work))
                got.setdefault("corral vm one-shot (up -d)", []).append(corral_vm(work))
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in got.items()),
              file=sys.stderr)
    med = {k: statistics.median(v) for k, v in got.items()}
    load = f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after, on {os.cpu_count()} cores"
    command = "python bench/levels.py " + shlex.join(sys.argv[1:])
    lines = [BEGIN, "## Container and vm levels: corral over the engine itself", "",
             f"Produced by `{command}` on {started:%Y-%m-%d %H:%M} UTC, median of "
             f"{args.runs} interleaved runs (1-minute load average {load}). Bars: a container "
             "agent running within 1.2x of `podman run -d`; a one-shot vm agent done within "
             "1.2x of bare QEMU.", "",
             "| what | s | vs the engine | bar |", "|---|---:|---:|---|"]
    rows = ((PODMAN, None, True), (WARM, PODMAN, True), (WARM_PS, PODMAN, False),
            (COLD, PODMAN, False), (API, PODMAN, False), (OWN, None, False),
            ("bare qemu one-shot", None, True),
            ("corral vm one-shot (up -d)", "bare qemu one-shot", True))
    for name, ref, bar in rows:
        if name not in med:
            lines.append(f"| {name} | n/a | | not measured (engine not installed) |")
            continue
        ratio = med[name] / med[ref] if ref and ref in med else None
        verdict = "" if ratio is None else (
            "informational" if not bar else "reached" if ratio <= 1.2 else "**not reached**")
        lines.append(f"| {name} | {med[name]:.3f} | "
                     f"{'' if ratio is None else f'{ratio:.2f}x'} | {verdict} |")
    lines += ["", *_why(med, {k: len(v) for k, v in got.items()})]
    emit_block(lines, END, args.out)
    return 0


def _why(med: dict[str, float], counts: dict[str, int]) -> list[str]:
    """What the container numbers say, in words (kept in the block, so a re-run keeps it
    true)."""
    if WARM not in med or PODMAN not in med:
        return []
    ratio = med[WARM] / med[PODMAN]
    own = med.get(OWN)
    api = med.get(API)
    parts = [f"How a warm start divides: the engine's own create, start and inspect over its "
             f"API take {api * 1000:.0f} ms" if api else "", f"corral's CLI, daemon and a "
             f"process start {own * 1000:.0f} ms" if own else ""]
    split = " and ".join(p for p in parts if p)
    text = (f"The container bar is {'reached' if ratio <= 1.2 else 'missed'}: `corral start "
            f"--wait` returns with the agent running in {ratio:.2f}x the time of `podman run "
            f"-d` (medians; `podman run -d` measured {counts.get(PODMAN, 0)} times, next to "
            "each corral start). corral drives the engine through its REST API on its Unix "
            "socket (Docker's, or a `podman system service` the daemon starts once and stops "
            "with itself), one request per step instead of a CLI process; what need not be "
            "asked twice (image present, network, volumes, the command in the image) is asked "
            "once per fleet. The confirming `corral ps` is one more Python process: counted "
            f"too, the start is {med.get(WARM_PS, 0) / med[PODMAN]:.2f}x. {split}"
            f"{'.' if split else ''} Cold adds the daemon's boot, the manifest's validation, "
            "the Podman service's start and the first start's image and command checks.")
    return _wrap(text)


def _wrap(text: str, width: int = 96) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*out, line] if line else out


async def _probe_kvm() -> None:
    from corral.drivers.vm import qemu

    await qemu.probe_kvm()  # cached per boot: not inside a timed run


if __name__ == "__main__":
    sys.exit(main())
