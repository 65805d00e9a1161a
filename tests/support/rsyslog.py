"""A real syslog receiver for the forwarding tests: Debian's ``rsyslog``, in the foreground
with a temp config (``imtcp`` and ``imudp`` on free 127.0.0.1 ports, each message written to
a file as one JSON object of the fields rsyslog parsed from it: its RFC 5424 parser's, not
ours), stopped by its PID at the end. Its UDP input gets a 16 MB receive buffer: UDP drops
what a full buffer cannot take, and a burst of a few hundred datagrams filled the default."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.receivers import free_port

INSTALL = "scripts/install.sh --test installs it (apt-get install rsyslog)"

CONFIG = """\
global(workDirectory="{work}" maxMessageSize="64k"
       parser.escapeControlCharactersOnReceive="off")
module(load="imtcp")
module(load="imudp")
template(name="fields" type="list" option.jsonf="on") {{
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="severity" name="syslogseverity" format="jsonf" datatype="number")
  property(outname="facility" name="syslogfacility" format="jsonf" datatype="number")
  property(outname="time" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="host" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="input" name="inputname" format="jsonf")
}}
ruleset(name="out") {{
  action(type="omfile" file="{out}" template="fields")
}}
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="out")
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="out" rcvbufSize="16m")
"""


@dataclass(frozen=True)
class Rsyslog:
    tcp: int
    udp: int
    out: Path
    log: Path

    def messages(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def wait(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        got: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            got = self.messages()
            if len(got) >= count:
                return got
            time.sleep(0.1)
        raise AssertionError(
            f"rsyslog got {len(got)} of {count} messages; its log:\n"
            f"{self.log.read_text() if self.log.exists() else ''}"
        )


@contextlib.contextmanager
def rsyslog(root: Path) -> Iterator[Rsyslog]:
    binary = shutil.which("rsyslogd") or (
        "/usr/sbin/rsyslogd" if os.path.exists("/usr/sbin/rsyslogd") else None
    )
    if binary is None:
        pytest.skip(f"rsyslogd is not installed: {INSTALL}")
    work = root / "rsyslog"
    work.mkdir()
    r = Rsyslog(free_port(), free_port(), work / "messages.json", work / "rsyslogd.log")
    conf = work / "rsyslog.conf"
    conf.write_text(CONFIG.format(work=work, out=r.out, tcp=r.tcp, udp=r.udp))
    pidfile = work / "rsyslogd.pid"
    with open(r.log, "wb") as log:
        proc = subprocess.Popen(
            [binary, "-n", "-f", str(conf), "-i", str(pidfile)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        import socket

        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", r.tcp)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"rsyslogd did not listen: {r.log.read_text()}")
            time.sleep(0.05)
        yield r
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
