"""The floor: a minimal Popen + selectors supervisor.

    baseline.py run --status FILE --log FILE --n N --cmd JSON   start N copies of the command
                                                                (a JSON argv list), supervise
    baseline.py status FILE                                     print the status (the "CLI")

Control channel: the supervisor rewrites FILE (JSON, atomically via rename) whenever a child
starts or exits; SIGTERM or SIGINT stops every child (SIGTERM, then SIGKILL after 5 s) and exits.
Every line a child prints is appended to the log file as ``<unix time> <name> <line>``. A child
that exits is started again at once (restart always, zero delay). Children get BASELINE_INDEX.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import time


class Baseline:
    def __init__(self, cmd: list[str], n: int, status: str, log: str) -> None:
        self.cmd, self.status, self.sel = cmd, status, selectors.DefaultSelector()
        self.log = open(log, "ab", buffering=1 << 20)  # noqa: SIM115 - lives as long as we do
        self.procs: dict[int, subprocess.Popen[bytes]] = {}  # slot -> child
        self.restarts = [0] * n
        self.partial: dict[int, bytes] = {}  # fd -> unfinished line
        self.stopping = False
        rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        signal.set_wakeup_fd(wfd)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop_request)
        self.sel.register(rfd, selectors.EVENT_READ, None)
        for slot in range(n):
            self.spawn(slot)
        self.write_status()

    def _stop_request(self, *_: object) -> None:
        self.stopping = True

    def spawn(self, slot: int) -> None:
        env = dict(os.environ, BASELINE_INDEX=str(slot + 1))
        p = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        assert p.stdout is not None
        os.set_blocking(p.stdout.fileno(), False)
        self.sel.register(p.stdout, selectors.EVENT_READ, slot)
        self.procs[slot] = p

    def write_status(self) -> None:
        kids = [
            {
                "name": f"c{s + 1}",
                "pid": p.pid,
                "state": "running" if p.returncode is None else "exited",
                "restarts": self.restarts[s],
            }
            for s, p in self.procs.items()
        ]
        with open(self.status + ".tmp", "w") as f:
            json.dump({"pid": os.getpid(), "children": kids}, f)
        os.replace(self.status + ".tmp", self.status)

    def read(self, key: selectors.SelectorKey) -> None:
        fd = key.fd
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        buf = self.partial.pop(fd, b"") + data
        if data:
            *lines, rest = buf.split(b"\n")
            if rest:
                self.partial[fd] = rest
        else:  # EOF: forget the pipe, keep an unfinished last line
            self.sel.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
            lines = [buf] if buf else []
        if lines:
            prefix = b"%.6f c%d " % (time.time(), key.data + 1)
            self.log.write(b"".join(prefix + line + b"\n" for line in lines))

    def reap(self) -> bool:
        changed = False
        for slot, p in list(self.procs.items()):
            if p.poll() is not None and not self.stopping:
                self.restarts[slot] += 1
                self.spawn(slot)
                changed = True
        return changed

    def run(self) -> None:
        while not self.stopping:
            dirty = False
            for key, _ in self.sel.select(timeout=1.0):
                if key.data is None:  # signal wakeup: a child exited (or a stop request)
                    os.read(key.fd, 4096)
                    dirty = self.reap() or dirty
                else:
                    self.read(key)
            self.log.flush()
            if dirty:
                self.write_status()
        self.stop()

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 5
        for p in self.procs.values():
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.log.flush()
        self.write_status()


def main() -> None:
    if sys.argv[1:2] == ["status"]:
        with open(sys.argv[2]) as f:
            for c in json.load(f)["children"]:
                print(f"{c['name']}\t{c['state']}\tpid {c['pid']}\trestarts {c['restarts']}")
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["run"])
    ap.add_argument("--status", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--cmd", required=True, help="the child's argv as a JSON list, or @FILE")
    a = ap.parse_args()
    spec = a.cmd
    if spec.startswith("@"):
        with open(spec[1:]) as f:
            spec = f.read()
    Baseline(json.loads(spec), a.n, a.status, a.log).run()


if __name__ == "__main__":
    main()
