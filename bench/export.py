"""How long `corral export kubernetes` takes for a 500-agent fleet (issue 11's bar: under 2 s,
the whole CLI process), beside what a user runs on the same fleet instead: kompose cannot be
installed here (no registry carries it), so the reference points are `kubectl kustomize` of
the exported directory and `docker-compose config` of the fleet's compose export, both
whole processes too. Each value is the median of --runs, the commands interleaved so the
machine's noise falls on all alike.

    python bench/export.py [--n 500] [--runs 7] [--out FILE]  (a section for docs/benchmarks.md)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine_facts

# the interpreter this runs on (the project venv's, as in bench/README.md)
PYTHON = Path(sys.executable)
BAR = 2.0
LEVELS = ("process", "venv", "container")


def agent(i: int, n: int) -> list[str]:
    """Agent ``i`` of ``n``: every third a service with a port and probes, scheduled ones,
    dependencies on an earlier service, volumes, secrets, limits, mixed levels."""
    name, level = f"a{i:04d}", LEVELS[i % 3]
    probed = i % 3 != 1  # process agents get tcp/http probes, container ones exec
    cls = "compute" if i % 10 == 7 else "service" if probed else ("io", "compute", "ai")[i % 9 // 3]
    lines = [f"  {name}:", f"    class: {cls}",
             f"    isolation: {level}"]
    if level == "venv":
        lines += ["    workdir: app", "    command: python worker.py"]
    elif level == "container":
        lines += ["    container:", "      image: docker.io/library/redis:7-bookworm",
                  f"      ports: [\"{20000 + i}:6379\"]", "    command: redis-server"]
    else:
        lines += [f"    command: python3 -m http.server {10000 + i}"]
    lines += [f"    env: {{INDEX: \"{i}\", ROLE: r{i % 7}}}", f"    replicas: {1 + i % 3}",
              "    resources: {cpus: 0.5, memory: 128M}",
              f"    volumes: [\"data{i % 50}:/var/lib/a\"]", "    secrets: [token]"]
    if i % 3 == 0 and level == "process":
        lines += [f"    readiness: {{tcp: {10000 + i}, period: 2s}}",
                  f"    liveness: {{http: {{port: {10000 + i}, path: /}}, period: 10s}}"]
    if i % 3 == 2:
        lines += ["    readiness: {exec: redis-cli ping, period: 2s}"]
    if i % 10 == 7:
        lines += ["    schedule: {cron: \"*/15 * * * *\", timezone: UTC}",
                  "    restart: {policy: \"no\"}"]
    elif i % 5 == 1:
        lines += ["    restart: {policy: always, backoff: {initial: 1s, max: 30s}}"]
    if i >= 3:
        dep = f"a{(i // 3 - 1) * 3 + 2:04d}"  # an earlier container service with a probe
        lines += [f"    depends_on: {{{dep}: {{condition: healthy}}}}"]
    return lines


def fleet(root: Path, n: int) -> Path:
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "app" / "requirements.txt").write_text("six==1.16.0\n")
    (root / "app" / "worker.py").write_text("import time\nwhile True:\n    time.sleep(60)\n")
    (root / "token.env").write_text("TOKEN=bench-only\n")
    text = ["name: bench-export", "secrets:", "  token: {env_file: token.env, key: TOKEN}",
            "agents:"]
    for i in range(n):
        text += agent(i, n)
    path = root / "corral.yaml"
    path.write_text("\n".join(text) + "\n")
    return path


def timed(argv: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}... exited {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()[-300:]}")
    return took


def commands(root: Path, manifest: Path) -> dict[str, list[str] | str]:
    """What is timed, or why it cannot be (a string)."""
    corral = [str(PYTHON), "-m", "corral.cli.main", "-f", str(manifest)]
    out: dict[str, list[str] | str] = {
        "corral export kubernetes": [*corral, "export", "kubernetes", "--out",
                                     str(root / "k8s"), "--report", "json"],
        "corral config (load only)": [*corral, "config"],
    }
    if shutil.which("kubectl"):
        out["kubectl kustomize (the export)"] = ["kubectl", "kustomize", str(root / "k8s")]
    else:
        out["kubectl kustomize (the export)"] = "kubectl is not installed"
    compose = subprocess.run([*corral, "export", "compose", "--out", str(root / "compose")],
                             capture_output=True, text=True, timeout=600)
    if compose.returncode != 0:
        out["docker-compose config (compose export)"] = (
            "no compose export: " + compose.stderr.strip().splitlines()[-1][:160])
    elif shutil.which("docker-compose") is None:
        out["docker-compose config (compose export)"] = "docker-compose is not installed"
    else:
        found = sorted((root / "compose").glob("*compose*.y*ml"))
        out["docker-compose config (compose export)"] = [
            "docker-compose", "-f", str(found[0]), "config", "-q"]
    out["kompose convert"] = "kompose cannot be installed here (no package or registry has it)"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", help="write the Markdown section to this file")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        manifest = fleet(root, args.n)
        todo = commands(root, manifest)
        timed(todo["corral export kubernetes"], root)  # type: ignore[arg-type]  # warm-up
        times: dict[str, list[float]] = {k: [] for k, v in todo.items() if isinstance(v, list)}
        for _ in range(args.runs):
            for name in times:
                times[name].append(timed(todo[name], root))  # type: ignore[arg-type]
        files = sum(1 for _ in (root / "k8s").rglob("*.yaml"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    ours = medians["corral export kubernetes"]
    facts = machine_facts()
    lines = [
        "## Export: `corral export kubernetes` of a 500-agent fleet",
        "",
        f"Produced by `python bench/export.py --n {args.n} --runs {args.runs}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{', '.join(f'{k}: {v}' for k, v in facts.items())}.",
        "",
        f"The fleet: {args.n} distinct agents (process, venv and container levels in turn, "
        "1-3 replicas, ports, tcp/http/exec probes, a dependency on an earlier service with "
        "`condition: healthy`, cron schedules, restart backoff, named volumes, a secret, "
        f"limits), written by the script. The export wrote {files} YAML files. Each value is "
        f"the median of {args.runs} runs of the whole process, the commands interleaved.",
        "",
        "| command | median s | vs corral export | note |",
        "|---|---:|---:|---|",
    ]
    for name, what in todo.items():
        if isinstance(what, str):
            lines.append(f"| {name} | n/a | | {what} |")
        else:
            note = f"bar < {BAR:.0f} s: {'met' if ours < BAR else 'NOT met'}" if (
                name == "corral export kubernetes") else ""
            lines.append(f"| {name} | {medians[name]:.2f} | {medians[name] / ours:.2f}x | "
                         f"{note} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0 if ours < BAR else 1


if __name__ == "__main__":
    os.chdir(Path(__file__).parent)
    sys.exit(main())
