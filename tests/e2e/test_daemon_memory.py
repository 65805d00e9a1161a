"""The daemon stays lean at rest (benchmark S2): no pydantic, no ssl, no argparse, no package
metadata in the process; and an https probe still works there, importing ssl on demand."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import Project

HEAVY = ["pydantic", "pydantic_core", "ssl", "_ssl", "argparse", "yaml", "importlib.metadata",
         "prometheus_client", "email", "uuid", "pathlib", "urllib.parse", "ipaddress"]


def _run(code: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_everything_the_daemon_imports_leaves_the_heavy_modules_out() -> None:
    out = _run(f"""
        import sys
        from corral.daemon import entry as daemon
        daemon._asyncio_without_ssl()
        import corral.daemon.serve
        # the engine API, on demand
        import corral.drivers.container.service
        import corral.drivers.container.transport.api
        from corral.drivers import registry
        for name in ("process", "venv", "fake", "container"):
            registry.load(name)
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    assert out.strip() == "[]"


def test_a_running_daemon_never_loaded_pydantic_or_ssl(project: Project) -> None:
    project.write("""
        name: lean
        agents:
          idle:
            command: sleep 300
            replicas: 2
            readiness: {exec: "true", period: 1s}
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: all(x["health"] == "healthy" for x in r.values()),
                     what="healthy")
    pid = project.daemon_pid()
    assert pid is not None
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "_pydantic_core" not in maps
    assert "/_ssl." not in maps and "libssl" not in maps
    # still fully working: a reconcile after a change restarts the changed agent
    project.write("""
        name: lean
        agents:
          idle:
            command: sleep 301
            replicas: 2
    """)
    out = project.corral("up", "-d").stdout
    assert "idle.1" in out


SERVER_AND_PROBE = """
    import sys
    from corral.daemon import entry as daemon
    daemon._asyncio_without_ssl()
    import asyncio, socket, threading
    from corral.manifest import decode
    from corral.runtime.health import check
    assert "ssl" not in sys.modules, "the health module must import ssl only on demand"
    import ssl  # the test's own server

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain({cert!r}, {key!r})
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        while True:
            conn, _ = listener.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(4096)
                    tls.sendall(b"HTTP/1.0 204 No Content\\r\\n\\r\\n")
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    agent = decode.agent({{"command": ["x"], "readiness": {{"http": {{
        "port": port, "scheme": "https", "path": "/ready", "status": [204]}}}}}})
    print(asyncio.run(check(agent.readiness, env={{}}, workdir=".", log_watch=None)))
"""


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a cert")
def test_an_https_probe_works_in_the_daemon_and_still_verifies(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    code = SERVER_AND_PROBE.format(cert=str(cert), key=str(key))
    trusted = _run(code, env={"SSL_CERT_FILE": str(cert), "PATH": "/usr/bin:/bin"})
    assert trusted.strip() == "(True, 'http /ready: status 204')"
    # a certificate nobody vouches for fails the probe, as asyncio's default context did
    untrusted = _run(code, env={"SSL_CERT_FILE": str(tmp_path / "none.pem"),
                                "PATH": "/usr/bin:/bin"})
    assert untrusted.startswith("(False, ") and "CERTIFICATE_VERIFY_FAILED" in untrusted


def test_giving_back_the_heap_is_harmless() -> None:
    _run("""
        from corral.daemon.serve import give_back_heap
        give_back_heap()
        give_back_heap()
    """)
