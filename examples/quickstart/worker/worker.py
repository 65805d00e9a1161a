"""A worker in its own venv (six 1.16): counts work items in the cache every two seconds."""

import json
import os
import socket
import time

import six

port = int(os.environ["CACHE_PORT"])
me = os.environ.get("CORRAL_INSTANCE", "worker")
while True:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"INCR jobs\r\n")
        count = int(s.recv(64).strip().lstrip(b":"))
    print(json.dumps({"level": "info", "message": f"{me} handled job {count}",
                      "six": six.__version__}), flush=True)
    time.sleep(2)
