"""Issue 12's bars on a real local Ray cluster (a head and a worker node on loopback, as the
tests start it: ``tests/support/raycluster.py``), side by side in one run:

- R1: N cluster instances of one idle command, from the command that starts them until all
  run (corral: until ``corral ps`` shows them running), through corral (``placement: ray``,
  its daemon and bridge started cold), as bare actors (one actor each, running the command
  in a subprocess, the way a user would script it) and as one Ray Job each
  (``JobSubmissionClient``, until every job is RUNNING). Each a fresh process, ``ray.init``
  included, as corral's bridge includes it.
- R2: restart after ``kill -9`` of an instance's process on the cluster, until ``corral ps``
  shows the new run (the agent's backoff 0.1 s), the median of --repeats.
- R3: 10 agents x --lines lines of 100 bytes printed on the cluster: lines lost, out of
  order or duplicated in corral's log store, and the rate.

    python bench/ray.py [--n 100] [--lines 100000] [--repeats 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from common import machine_facts

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.support import raycluster  # noqa: E402  (the tests' cluster, started the same way)

PY = sys.executable
CORRAL = [PY, "-m", "corral.cli.main"]
IDLE = "import time; time.sleep(600)"

BARE = """\
import json, subprocess, sys, time
import ray
t0 = time.monotonic()
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
@ray.remote(num_cpus=0)
class Runner:
    def start(self, argv):
        self.proc = subprocess.Popen(argv)
        return self.proc.pid
    def stop(self):
        self.proc.kill(); self.proc.wait()
actors = [Runner.remote() for _ in range(int(sys.argv[2]))]
ray.get([a.start.remote([sys.executable, "-c", sys.argv[3]]) for a in actors])
print(json.dumps({"elapsed": time.monotonic() - t0}), flush=True)
ray.get([a.stop.remote() for a in actors])
"""

JOBS = """\
import json, sys, time
from ray.job_submission import JobStatus, JobSubmissionClient
t0 = time.monotonic()
client = JobSubmissionClient(sys.argv[1])
ids = [client.submit_job(entrypoint=f"python -c '{sys.argv[3]}'")
       for _ in range(int(sys.argv[2]))]
deadline = t0 + float(sys.argv[4])
waiting = set(ids)
while waiting and time.monotonic() < deadline:
    waiting = {j for j in waiting if client.get_job_status(j) != JobStatus.RUNNING}
    time.sleep(0.1)
print(json.dumps({"elapsed": time.monotonic() - t0, "not_running": len(waiting)}), flush=True)
for j in ids:
    client.stop_job(j)
"""


# 100-byte lines (as bench/spammer.py's), 1,000 a write, then idle
SPAM = """\
import os, sys, time
head, tail = b"#SPAM# %07d " % os.getpid(), b" " + b"x" * 74 + b"\\n"
lines = int(sys.argv[1])
for start in range(0, lines, 1000):
    os.write(1, b"".join(head + b"%09d" % i + tail for i in range(start, min(lines, start + 1000))))
time.sleep(600)
"""


def corral(root: Path, *args: str, env: dict[str, str], check: bool = True) -> str:
    proc = subprocess.run([*CORRAL, "-f", str(root / "corral.yaml"), *args], cwd=root,
                          env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"corral {' '.join(args)}: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def rows(root: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in json.loads(corral(root, "ps", "--json", env=env))}


def fleet(root: Path, address: str, agents: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corral.yaml").write_text(textwrap.dedent(f"""\
        name: {root.name}
        cluster:
          ray: {{address: "{address}"}}
        agents:
        """) + textwrap.indent(textwrap.dedent(agents), "  "))


def r1_corral(tmp: Path, address: str, n: int, env: dict[str, str]) -> float:
    root = tmp / "r1"
    fleet(root, address, f"""\
        w:
          placement: ray
          replicas: {n}
          command: ["python", "-c", "{IDLE}"]
        """)
    t0 = time.monotonic()
    corral(root, "up", "-d", env=env)
    while sum(r["state"] == "running" for r in rows(root, env).values()) < n:
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    corral(root, "down", env=env)
    return elapsed


def script(code: str, *args: str, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([PY, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=900, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip()[-400:])
    # Ray prints its own lines too: the script's is the one JSON object
    line = next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith('{"elapsed"'))
    found: dict[str, Any] = json.loads(line)
    return found


def r2_restart(tmp: Path, address: str, repeats: int, env: dict[str, str]) -> list[float]:
    root = tmp / "r2"
    fleet(root, address, """\
        r:
          placement: ray
          restart: {policy: always, backoff: {initial: 0.1s, factor: 1, max: 0.1s}}
          command: ["python", "-c", "import os, time; open('pids', 'a').write(f'{os.getpid()}\\\\n'); time.sleep(600)"]
        """)  # noqa: E501
    corral(root, "up", "-d", env=env)
    times = []
    try:
        for i in range(repeats):
            while rows(root, env)["r.1"]["state"] != "running" or not (root / "pids").exists() \
                    or len((root / "pids").read_text().split()) <= i:
                time.sleep(0.02)
            pid = int((root / "pids").read_text().split()[-1])
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            while True:
                row = rows(root, env)["r.1"]
                if row["restarts"] > i and row["state"] == "running":
                    break
                time.sleep(0.02)
            times.append(time.monotonic() - t0)
    finally:
        corral(root, "down", env=env)
    return times


def r3_logs(tmp: Path, address: str, lines: int, env: dict[str, str]) -> dict[str, Any]:
    root = tmp / "r3"
    fleet(root, address, "".join(f's{i}:\n  placement: ray\n  command: ["python", "spam.py", '
                                 f'"{lines}"]\n' for i in range(10)))
    (root / "spam.py").write_text(SPAM)  # the workdir: the nodes share this file system
    t0 = time.monotonic()
    corral(root, "up", "-d", env=env)
    expected, size, changed = 10 * lines, -1, time.monotonic()
    logs = root / ".corral" / "logs"
    while time.monotonic() - changed < 5:  # the store grows until the last line is in
        now = sum(f.stat().st_size for f in logs.glob("*.log*")) if logs.is_dir() else 0
        if now != size:
            size, changed = now, time.monotonic()
        time.sleep(0.1)
    elapsed = changed - t0
    seen = sum(sum(1 for _ in f.open("rb")) for f in logs.glob("*.log*"))
    corral(root, "down", env=env)
    bad = lost = 0
    for i in range(10):
        got = [json.loads(ln)["message"] for ln in
               corral(root, "logs", f"s{i}", "--json", env=env).splitlines()]
        seqs = [int(m.split()[2]) for m in got if m.startswith("#SPAM#")]
        lost += lines - len(set(seqs))
        bad += sum(1 for a, b in itertools.pairwise(seqs) if b != a + 1)
    return {"stored": seen, "expected": expected, "lost": lost, "out_of_order": bad,
            "rate": seen / elapsed if elapsed > 0 else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", help="write the Markdown section here too")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "RAY_USAGE_STATS_ENABLED": "0"}
    with tempfile.TemporaryDirectory(prefix="corral-bench-ray-") as td:
        tmp = Path(td)
        with raycluster.cluster(tmp) as cluster:
            env = {**cluster.env, **env}
            mine = r1_corral(tmp, cluster.address, args.n, env)
            bare = script(BARE, cluster.address, str(args.n), IDLE, env=env)["elapsed"]
            jobs = script(JOBS, cluster.dashboard, str(args.n), IDLE, "600", env=env)
            restarts = r2_restart(tmp, cluster.address, args.repeats, env)
            logs = r3_logs(tmp, cluster.address, args.lines, env)
    out = [
        f"### Ray placement (bench/ray.py, N={args.n})", "",
        "    python bench/ray.py " + " ".join(sys.argv[1:]), "",
        *(f"- {k}: {v}" for k, v in machine_facts().items()), "",
        "| measure | corral | bare actors | one Ray Job each | bar |", "|---|---|---|---|---|",
        f"| R1: {args.n} instances until all run | {mine:.2f} s | {bare:.2f} s "
        f"({mine / bare:.2f}x) | {jobs['elapsed']:.2f} s"
        f"{' (' + str(jobs['not_running']) + ' never ran)' if jobs['not_running'] else ''} | "
        f"within 1.3x of bare actors: {'met' if mine <= 1.3 * bare else 'MISSED'}; faster "
        f"than jobs: {'met' if mine < jobs['elapsed'] else 'MISSED'} |",
        f"| R2: kill -9 to the new run in ps, median of {len(restarts)} | "
        f"{statistics.median(restarts):.3f} s (max {max(restarts):.3f}) | - | - | under 1 s: "
        f"{'met' if statistics.median(restarts) < 1 else 'MISSED'} |",
        f"| R3: 10 x {args.lines} lines | {logs['lost']} lost, {logs['out_of_order']} out of "
        f"order, {logs['rate']:,.0f} lines/s | - | - | 0 lost: "
        f"{'met' if logs['lost'] == 0 else 'MISSED'} |", ""]
    text = "\n".join(out)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
