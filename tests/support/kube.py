"""The fake cluster of ``kube_fake.py`` as a process, and a kubeconfig pointing at it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

FAKE = Path(__file__).with_name("kube_fake.py")


def kubeconfig(path: Path, port: int, token: str = "t0ken", namespace: str = "team") -> Path:
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {{server: "http://127.0.0.1:{port}"}}
- name: gone
  cluster: {{server: "http://127.0.0.1:9"}}
users:
- name: ci
  user: {{token: {token}}}
- name: stranger
  user: {{token: forbidden}}
contexts:
- name: fake
  context: {{cluster: fake, user: ci, namespace: {namespace}}}
- name: gone
  context: {{cluster: gone, user: ci}}
- name: forbidden
  context: {{cluster: fake, user: stranger}}
current-context: fake
""")
    return path


@contextlib.contextmanager
def fake_cluster(tmp: Path) -> Iterator[tuple[int, Path]]:
    """(port, kubeconfig); the server process is stopped by its PID."""
    proc = subprocess.Popen([sys.executable, str(FAKE)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield port, kubeconfig(tmp / "kubeconfig", port)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
