"""An older agent pinned to six 1.15, running side by side with the six 1.16 workers."""

import time

import six

while True:
    print(f"legacy agent alive with six {six.__version__}", flush=True)
    time.sleep(5)
