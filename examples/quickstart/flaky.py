"""Crashes now and then: corral restarts it with exponential backoff."""

import random
import sys
import time

life = random.uniform(2, 6)
print(f"flaky: up, will crash in {life:.1f}s", flush=True)
time.sleep(life)
print("flaky: ERROR something went wrong, exiting 1", file=sys.stderr, flush=True)
sys.exit(1)
