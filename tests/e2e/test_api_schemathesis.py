"""Property-based test of the daemon's API: schemathesis generates requests from the served
``/openapi.json`` (valid ones, and ones that break it) and sends them to a real daemon; no
answer may be a 5xx, break the document's response schemas or status codes, or accept what
the document refuses.

The daemon speaks only over its Unix socket; a small TCP forwarder on 127.0.0.1 bridges
schemathesis's HTTP client to it. Two routes are left out: ``/v1/shutdown`` (it ends the
daemon under test; its bodies are checked in ``test_api_input``) and ``/v1/events`` (an
endless stream, which a request-response client never finishes reading). The fleet is two
fake agents (no processes), so a generated ``scale`` to 10,000 replicas costs tasks, not a
machine's worth of processes; they are named ``0`` and ``a``, names the generator tries
first, so the routes' success paths are exercised too and not only their 404s.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis

# What ``from_url`` imports on first use, imported here, at collection: pytest rewrites the
# asserts of a plugin's modules as they are imported, and on CPython 3.11.7 an ast.parse run
# deep in a test (with coverage's tracer on) can fail with "AST constructor recursion depth
# mismatch" (python/cpython#106905, fixed in 3.11.8).
import schemathesis.specs.openapi.schemas
from hypothesis import HealthCheck, given, settings

from tests.e2e.conftest import Project

pytestmark = pytest.mark.e2e

EXCLUDED = {"/v1/shutdown", "/v1/events"}
# per route and mode; 25 run in ~15 s on two cores (CORRAL_API_FUZZ_EXAMPLES=500 for a soak)
EXAMPLES = int(os.environ.get("CORRAL_API_FUZZ_EXAMPLES", "25"))


class _Forward(socketserver.BaseRequestHandler):
    """Copies bytes both ways between one TCP connection and the daemon's socket."""

    target = ""

    def handle(self) -> None:
        upstream = socket.socket(socket.AF_UNIX)
        upstream.connect(self.target)
        sel = selectors.DefaultSelector()
        sel.register(self.request, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, self.request)
        try:
            while True:
                for key, _ in sel.select(timeout=120):
                    data = key.fileobj.recv(1 << 16)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            upstream.close()


@contextlib.contextmanager
def forwarder(sock: Path) -> Iterator[str]:
    handler = type("Forward", (_Forward,), {"target": str(sock)})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _checks() -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    return [not_a_server_error, status_code_conformance, response_schema_conformance,
            content_type_conformance, negative_data_rejection]


def test_the_api_holds_to_its_openapi_description(project: Project) -> None:
    project.write("""
        name: fuzz
        agents:
          "0": {isolation: fake, command: fake}
          a: {isolation: fake, command: fake, replicas: 2}
    """)
    project.corral("up", "-d")
    with forwarder(project.state_dir / "corral.sock") as base:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        checks = _checks()
        operations = [result.ok() for result in schema.get_all_operations()]
        tested = [op for op in operations if op.path not in EXCLUDED]
        assert {op.path for op in operations} - {op.path for op in tested} == EXCLUDED
        for op in tested:
            takes = schema.raw_schema["paths"][op.path][op.method.lower()]
            # a route without inputs has nothing to break: no negative cases for it
            inputs = "parameters" in takes or "requestBody" in takes
            for mode in [schemathesis.GenerationMode.POSITIVE,
                         *[schemathesis.GenerationMode.NEGATIVE] * inputs]:

                @given(case=op.as_strategy(generation_mode=mode))
                @settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
                          database=None, suppress_health_check=list(HealthCheck))
                def run(case: Any) -> None:
                    case.call_and_validate(base_url=base, checks=checks, timeout=60)

                began = time.monotonic()
                run()
                print(f"{op.method} {op.path} {mode.value}: {time.monotonic() - began:.1f}s")
    assert "Traceback" not in project.daemon_log(), project.daemon_log()
