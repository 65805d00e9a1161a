"""Bad requests to the real daemon over its socket: each is a 4xx with a JSON message, none
changes the fleet, none leaves a traceback in the daemon log."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Project

pytestmark = pytest.mark.e2e


def raw(sock: Path, method: str, target: str, body: bytes = b"",
        timeout: float = 10) -> tuple[int, Any]:
    """One request as bytes on the wire, the way a script would send it."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        s.sendall(f"{method} {target} HTTP/1.0\r\nHost: corral\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(payload) if payload.strip() else None


BAD: list[tuple[str, str, bytes, int, str]] = [
    ("POST", "/v1/stop", b"[]", 400, "body: expected object, got array"),
    ("POST", "/v1/stop", b'"x"', 400, "body: expected object, got string"),
    ("POST", "/v1/stop", b'{"names": "idle"}', 400, "body.names: expected array or null"),
    ("POST", "/v1/stop", b'{"names": [1]}', 400, "body.names[0]: expected string"),
    ("POST", "/v1/stop", b"[" * 100_000 + b"]" * 100_000, 400, "nested deeper than 64"),
    ("POST", "/v1/scale", b'{"agent": "idle", "replicas": 1e400}', 400, "out of range"),
    ("POST", "/v1/scale", b'{"agent": "idle", "replicas": -3}', 400, "at least 0"),
    ("POST", "/v1/scale", b'{"agent": "idle", "replicas": 100000}', 400, "at most 10000"),
    ("POST", "/v1/scale", b'{"agent": "idle", "replicas": "2"}', 400, "expected integer"),
    ("POST", "/v1/scale", b'{"agent": "nope", "replicas": 1}', 404, "no agent named 'nope'"),
    ("POST", "/v1/start", b'{"wait": NaN}', 400, "NaN is not allowed"),
    ("POST", "/v1/restart", b'{"names": ["../x"]}', 400, "does not match"),
    ("POST", "/v1/start", b'{"names": ["ghost"]}', 404, "no agent or instance named"),
    ("POST", "/v1/wait", b'{"timeout": 1e300}', 400, "at most 86400"),
    ("POST", "/v1/wait", b'{"timeout": 1, "extra": true}', 400, "unknown field"),
    ("POST", "/v1/down", b'{"x": 1}', 400, "unknown field"),
    ("POST", "/v1/shutdown", b'{"stop_fleet": "no"}', 400, "expected boolean"),
    ("POST", "/v1/apply", b"{}", 400, "missing manifest"),
    ("POST", "/v1/apply", b'{"manifest": {"name": 1}}', 422, "name: expected str"),
    ("POST", "/v1/apply", b'{"manifest": {}, "secret_env": {"K": 1}}', 400, "expected string"),
    ("POST", "/v1/apply", b'{"manifest": {"name": "apiin", "agents": {"idle": {"command": '
     b'["sleep", "300"], "replicas": 100000}}}}', 422, "100000 is out of range: at most 10000"),
    ("POST", "/v1/apply", b'{"manifest": {"name": "apiin", "agents": {"idle": {"command": '
     b'["sleep", "300"], "replicas": -3}}}}', 422, "-3 is out of range: at least 0"),
    ("GET", "/v1/exec", b"", 400, "missing query parameter agent"),
    ("GET", "/v1/exec?agent=ghost", b"", 404, "no agent named 'ghost'"),
    ("GET", "/v1/logs?tail=x", b"", 400, "tail: expected an integer"),
    ("GET", "/v1/logs?tail=", b"", 400, "tail: expected an integer"),
    ("GET", "/v1/logs?since=garbage", b"", 400, "cannot read 'garbage' as a time"),
    ("GET", "/v1/logs?grep=(", b"", 400, "not a valid regular expression"),
    ("GET", "/v1/logs?level=loud", b"", 400, "expected one of"),
    ("GET", "/v1/logs?agent=../../etc/passwd", b"", 400, "does not match"),
    ("GET", "/v1/logs?agent=ghost", b"", 404, "no agent named 'ghost'"),
    ("GET", "/v1/logs?follow=1", b"", 400, "unknown query parameter"),
    ("GET", "/v1/events?logs=1&grep=(", b"", 400, "not a valid regular expression"),
    ("GET", "/v1/events?logs=yes", b"", 400, "expected one of"),
    ("GET", "/v1/events?journal=yes", b"", 400, "expected one of"),
    ("GET", "/v1/journal?tail=-1", b"", 400, "tail"),
    ("GET", "/v1/journal?agent=ghost", b"", 404, "no agent named 'ghost'"),
    ("GET", "/v1/journal?follow=1", b"", 400, "unknown query parameter"),
    ("GET", "/v1/nowhere", b"", 404, "no route"),
]


def test_bad_requests_get_a_4xx_with_a_message_and_change_nothing(project: Project) -> None:
    project.write("""
        name: apiin
        agents:
          idle: {command: sleep 300, replicas: 2}
          talker:
            command: sh -c 'while true; do echo tick; sleep 0.2; done'
    """)
    project.corral("up", "-d")
    project.corral("stop", "idle.2")  # the user stopped it: no bad request may start it
    before = project.ps()
    assert before["idle.2"]["state"] == "stopped"
    sock = project.state_dir / "corral.sock"
    for method, target, body, status, problem in BAD:
        got, reply = raw(sock, method, target, body)
        assert (got, problem in str(reply.get("error"))) == (status, True), (
            method, target, body[:60], got, reply)
        assert reply.get("fix"), reply  # every refusal says what to do
    time.sleep(0.5)  # the talker's records reach any subscriber a bad grep left behind
    after = project.ps()
    assert sorted(after) == sorted(before)  # scale -3 removed no instance
    assert after["idle.2"]["state"] == "stopped"
    assert after["idle.1"]["pid"] == before["idle.1"]["pid"]
    assert "Traceback" not in project.daemon_log(), project.daemon_log()
    status, _ = raw(sock, "GET", "/v1/status")  # and the daemon still answers
    assert status == 200


def test_good_requests_still_work_with_the_checks_in_place(project: Project) -> None:
    project.write("""
        name: apiok
        agents:
          talker:
            command: sh -c 'echo one; echo two; sleep 300'
    """)
    project.corral("up", "-d")
    project.wait_for(lambda rows: len(project.records("talker")) >= 2, what="two records")
    sock = project.state_dir / "corral.sock"
    status, report = raw(sock, "POST", "/v1/scale", b'{"agent": "talker", "replicas": 2}')
    assert (status, report["started"]) == (200, ["talker.2"])
    status, reply = raw(sock, "POST", "/v1/start", b'{"names": ["talker.2"], "wait": 30}')
    assert status == 200 and reply["settled"], reply
    status, reply = raw(sock, "POST", "/v1/wait", b'{"timeout": 5, "names": null}')
    assert status == 200 and reply["settled"]
    with socket.socket(socket.AF_UNIX) as s:  # a stream: records as JSON lines
        s.connect(str(sock))
        s.sendall(b"GET /v1/logs?agent=talker&instance=talker.1&grep=^t&tail=5 HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert [json.loads(line)["message"] for line in body.splitlines()] == ["two"]
    out = project.corral("logs", "--grep", "(", check=False)
    assert out.returncode != 0 and "not a valid regular expression" in out.stderr
    assert "Traceback" not in out.stderr
    assert "Traceback" not in project.daemon_log()
