"""Issue 13's RSS bar: the daemon's memory at rest with N agents holding AWS identities
(``aws:``) beside the same fleet without, and beside a process that imports boto3 and
makes the STS and S3 clients (what a daemon holding the SDK would keep).

    python bench/cloud_rss.py            # N=100
    python bench/cloud_rss.py --n 500

A real moto_server on 127.0.0.1 (``tests/support/moto.py``) answers STS; every agent is a
``sleep``; the daemon is measured 3 s after all are running (VmRSS and Pss of the daemon
alone: the agents are not its memory). Results go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from bench.common import rss_mb  # noqa: E402
from tests.support.moto import READER, moto_server  # noqa: E402

CORRAL = [sys.executable, "-m", "corral.cli.main"]


def _fleet(root: Path, n: int, cloud: str | None) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    agents = "\n".join(
        f"  a{i}:\n    command: [sleep, '600']\n"
        + (f"    aws: {{role: {READER}}}\n" if cloud else "") for i in range(n))
    manifest = root / "corral.yaml"
    manifest.write_text(f"name: rss\n{cloud or ''}\nagents:\n{agents}")
    run = lambda *a: subprocess.run([*CORRAL, "-f", str(manifest), *a], cwd=root, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=600)
    try:
        up = run("up", "-d")
        if up.returncode != 0:
            raise SystemExit(f"corral up failed: {up.stdout}{up.stderr}")
        deadline = time.monotonic() + 300
        while True:
            rows = json.loads(run("ps", "--json").stdout)
            if sum(r["state"] == "running" for r in rows) == n:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"not all running: {rows[:3]}")
            time.sleep(0.5)
        time.sleep(3)
        pid = int((root / ".corral" / "daemon.pid").read_text())
        return rss_mb([pid])[0]
    finally:
        pid_file = root / ".corral" / "daemon.pid"
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        run("down")
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _sdk_process() -> float:
    code = ("import boto3,os;s=boto3.session.Session(aws_access_key_id='x',"
            "aws_secret_access_key='y',region_name='us-east-1');"
            "c=[s.client(n,endpoint_url='http://127.0.0.1:1') for n in ('sts','s3')];"
            "print(int(open('/proc/self/statm').read().split()[1])*os.sysconf('SC_PAGE_SIZE'))")
    bare = ("import os;print(int(open('/proc/self/statm').read().split()[1])"
            "*os.sysconf('SC_PAGE_SIZE'))")
    out = [int(subprocess.run([sys.executable, "-c", c], capture_output=True, text=True,
                              check=True).stdout) for c in (code, bare)]
    return (out[0] - out[1]) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, moto_server(Path(tmp)) as account:
        plain_dir, aws_dir = Path(tmp) / "plain", Path(tmp) / "aws"
        plain_dir.mkdir()
        aws_dir.mkdir()
        os.environ.update(account.env(aws_dir))
        plain = _fleet(plain_dir, args.n, None)
        cloud = _fleet(aws_dir, args.n, f"cloud: {account.cloud_block()}")
    sdk = _sdk_process()
    print(f"daemon RSS at rest, N={args.n}: without aws: {plain:.1f} MB; every agent with "
          f"aws: {cloud:.1f} MB; difference {cloud - plain:+.1f} MB (bar: within 10 MB)")
    print(f"what boto3 + an STS and an S3 client add to a process: {sdk:.1f} MB "
          f"(a daemon importing the SDK would hold it: {sdk / 10:.1f}x the bar)")


if __name__ == "__main__":
    main()
