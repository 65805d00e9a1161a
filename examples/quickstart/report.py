"""Scheduled job: print the counters the workers keep in the cache, then exit 0."""

import sys

from kvclient import command

port = int(sys.argv[1])
jobs = command(port, "GET", "jobs").decode().splitlines()[-1]  # RESP: "$1", then the value
print(f"report: {jobs} work items counted so far", flush=True)
