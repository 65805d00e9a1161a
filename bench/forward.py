"""Issue 14's forwarding bar: S4 (10 children x LINES lines, bench/run.py's log throughput)
with corral alone, then with ``logs.forward: [{otlp: ...}]`` to a receiver that decodes the
OTLP/HTTP protobuf (``opentelemetry-proto``) in a process of its own and checks every line
(a bitmap per child: lost and duplicated lines). Prints both S4 rates, their ratio (the bar:
at least 0.8), the time until the receiver held every line, and the losses (the bar: 0).

    python bench/forward.py [--lines 200000] [--runs 1]

Runs the CLI of this checkout's ``.venv`` (as bench/run.py) or ``--venv``; PYTHONPATH set to
this checkout's src. Everything it starts is stopped by its own command, then by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

from common import BENCH, REPO, children, make_tag, spam_cmd, sweep
from logcheck import LogCounter, verify
from scenarios import Session
from tools import Fleet
from tools.corral import Corral

N = 10


def receive(port: int, lines: int) -> None:
    """The receiver process: OTLP/HTTP logs in, GET /count answers the tally as JSON."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as svc

    seen: dict[bytes, bytearray] = {}
    tally = {"records": 0, "duplicated": 0, "requests": 0, "last": 0.0}
    reply = svc.ExportLogsServiceResponse().SerializeToString()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            req = svc.ExportLogsServiceRequest.FromString(body)
            for rl in req.resource_logs:
                for sl in rl.scope_logs:
                    for lr in sl.log_records:
                        text = lr.body.string_value
                        if not text.startswith("#SPAM# "):
                            continue
                        pid, seq = text[7:14].encode(), int(text[15:24])
                        bits = seen.get(pid)
                        if bits is None:
                            bits = seen[pid] = bytearray(lines)
                        if bits[seq]:
                            tally["duplicated"] += 1
                        bits[seq] = 1
                        tally["records"] += 1
            tally["requests"] += 1
            tally["last"] = time.time()
            self._send(200, reply, "application/x-protobuf")

        def do_GET(self) -> None:
            unique = sum(b.count(1) for b in seen.values())
            body = json.dumps({**tally, "unique": unique, "children": len(seen)}).encode()
            self._send(200, body, "application/json")

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


class CorralForwarding(Corral):
    name = "corral+otlp"
    endpoint = ""

    def start(self, fleet: Fleet) -> None:
        self.fleet = fleet
        manifest = {
            "name": "bench",
            "logs": {"max_size": "2G", "forward": [{"otlp": {"endpoint": self.endpoint}}]},
            "agents": {
                fleet.agent: {
                    "command": fleet.cmd,
                    "replicas": fleet.n,
                    "restart": {"policy": "always", "backoff": {"initial": 0}},
                }
            },
        }
        (self.dir / "corral.yaml").write_text(json.dumps(manifest, indent=2) + "\n")
        self.run(self.corral("up", "-d"), timeout=600)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _count(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=10) as r:
        return dict(json.loads(r.read()))


def s4(cls: type[Corral], tag: str, lines: int, port: int | None) -> dict[str, object]:
    expected = N * lines
    with Session(cls, tag) as s:
        counter = LogCounter(s.tool.log_files)
        t0 = time.monotonic()
        s.tool.start(Fleet("spam", N, spam_cmd(tag, lines)))
        count, last_change = 0, t0
        while count < expected:
            now = counter.poll()
            if now != count:
                count, last_change = now, time.monotonic()
            if time.monotonic() - t0 > 300:
                raise SystemExit(f"timeout: {count} of {expected} lines stored")
            time.sleep(0.05)
        stored = last_change - t0
        out: dict[str, object] = {
            "tool": cls.name,
            "stored_s": stored,
            "lines_per_s": expected / stored,
        }
        if port is not None:
            got: dict[str, float] = {}
            while time.monotonic() - t0 < 600:
                got = _count(port)
                if got["unique"] >= expected:
                    break
                time.sleep(0.1)
            received = time.monotonic() - t0
            out.update(
                {
                    "received_s": received,
                    "forwarded_per_s": got["unique"] / received,
                    "lost": expected - got["unique"],
                    "duplicated": got["duplicated"],
                    "requests": got["requests"],
                }
            )
        s.stop()
        while children(tag):
            time.sleep(0.1)
        v = verify(s.tool.log_files(), N, lines)
        out["stored_check"] = v.summary()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    os.environ["PYTHONPATH"] = str(REPO / "src")
    port = _free_port()
    receiver = subprocess.Popen(
        [sys.executable, str(BENCH / "forward.py"), "--receive", str(port), str(args.lines)]
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                _count(port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        CorralForwarding.endpoint = f"http://127.0.0.1:{port}"
        results = []
        for _ in range(args.runs):
            for cls in (Corral, CorralForwarding):
                tag = make_tag()
                try:
                    results.append(
                        s4(cls, tag, args.lines, port if cls is CorralForwarding else None)
                    )
                finally:
                    sweep(tag)
                print(json.dumps(results[-1]), flush=True)
                if cls is CorralForwarding:  # the next run's receiver starts afresh
                    receiver.kill()
                    receiver.wait()
                    receiver = subprocess.Popen(
                        [
                            sys.executable,
                            str(BENCH / "forward.py"),
                            "--receive",
                            str(port),
                            str(args.lines),
                        ]
                    )
                    time.sleep(1)
        off = [r for r in results if r["tool"] == "corral"]
        on = [r for r in results if r["tool"] != "corral"]
        for a, b in zip(off, on, strict=True):
            ratio = float(b["lines_per_s"]) / float(a["lines_per_s"])  # type: ignore[arg-type]
            print(
                f"S4 off {a['lines_per_s']:,.0f} lines/s, on {b['lines_per_s']:,.0f} "
                f"lines/s: {ratio:.2f}x (bar 0.80x); all {N * args.lines} received after "
                f"{b['received_s']:.2f} s ({b['forwarded_per_s']:,.0f} lines/s), lost "
                f"{b['lost']}, duplicated {b['duplicated']}"
            )
    finally:
        receiver.kill()
        receiver.wait()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--receive":
        receive(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(main())
