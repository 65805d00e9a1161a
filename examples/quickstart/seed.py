"""Batch job: seed the cache, then exit 0 so the workers may start."""

import sys

from kvclient import command

port = int(sys.argv[1])
for key in ("jobs", "done"):
    command(port, "SET", key, "0")
print(f"seeded counters on port {port}", flush=True)
