"""A real image registry on 127.0.0.1 for the pull tests: Debian's ``docker-registry``
(Distribution 2.8), on a free port with a temp storage dir, optionally behind htpasswd
(bcrypt, made by apache2-utils' ``htpasswd``). Stopped by its PID at the end.

Podman refuses a plain-http registry unless it is marked insecure. The tests mark it in a
registries.conf of their own, named by ``CONTAINERS_REGISTRIES_CONF`` in the environment of
the corral commands only (which the daemon, the Podman service it starts and every ``podman``
it runs inherit): the host's configuration is never touched, and the mark dies with the test.
Pushes made by the test itself (not by corral) pass ``--tls-verify=false``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USER, PASSWORD = "corral", "s3cret-pull"
INSTALL = "scripts/install.sh --test installs it"


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:PORT
    registries_conf: Path  # marks it insecure for Podman

    def ref(self, name: str) -> str:
        return f"{self.host}/{name}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/v2/", timeout=2):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code == 401  # up, asking for the login
    except OSError:
        return False


@contextlib.contextmanager
def registry(root: Path, *, auth: bool = False) -> Iterator[Registry]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip(f"docker-registry is not installed: {INSTALL}")
    root.mkdir(parents=True, exist_ok=True)
    host = f"127.0.0.1:{_free_port()}"
    config: dict[str, object] = {
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "storage")},
                    "delete": {"enabled": True}},
        "http": {"addr": host}}
    if auth:
        htpasswd = shutil.which("htpasswd")
        if htpasswd is None:
            pytest.skip(f"htpasswd (apache2-utils) is not installed: {INSTALL}")
        line = subprocess.run([htpasswd, "-Bbn", USER, PASSWORD], capture_output=True,
                              text=True, check=True).stdout.strip()
        (root / "htpasswd").write_text(line + "\n")
        config["auth"] = {"htpasswd": {"realm": "corral-test", "path": str(root / "htpasswd")}}
    (root / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    conf = root / "registries.conf"
    conf.write_text(f'unqualified-search-registries = []\n\n[[registry]]\n'
                    f'location = "{host}"\ninsecure = true\n')
    with open(root / "registry.log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log,
                                stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not _answers(host):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text()}")
            time.sleep(0.1)
        yield Registry(host, conf)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
