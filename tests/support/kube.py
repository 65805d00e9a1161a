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


def kubeconfig(path: Path, port: int, token: str = "t0ken", namespace: str = "team",
               ca: Path | None = None) -> Path:
    """``ca``: the fake serves https with a certificate of that authority."""
    fake = f'server: "https://127.0.0.1:{port}", certificate-authority: "{ca}"' if ca else \
        f'server: "http://127.0.0.1:{port}"'
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {{{fake}}}
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


def certificate(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (``openssl``)."""
    cert, key = tmp / "fake.crt", tmp / "fake.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@contextlib.contextmanager
def fake_cluster(tmp: Path, tls: bool = False) -> Iterator[tuple[int, Path]]:
    """(port, kubeconfig); the server process is stopped by its PID. ``tls``: https, as
    kubectl needs to send a token at all."""
    cert, key = certificate(tmp) if tls else (None, None)
    args = ["--tls", str(cert), str(key)] if tls else []
    proc = subprocess.Popen([sys.executable, str(FAKE), *args], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield port, kubeconfig(tmp / "kubeconfig", port, ca=cert)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
