"""Watches the counters every five seconds. It needs the seeded cache: the counters live in
the cache's memory, so when the cache restarts corral re-runs `seed` and then restarts this
agent (`depends_on: {cache: {restart: true}}`)."""

import sys
import time

from kvclient import command

port = int(sys.argv[1])
if command(port, "GET", "done") == b"$-1":
    sys.exit("monitor: the cache is not seeded")
print("monitor: the cache is seeded", flush=True)
while True:
    jobs = command(port, "GET", "jobs").split(b"\r\n")
    print(f"monitor: {jobs[-1].decode()} jobs handled so far", flush=True)
    time.sleep(5)
