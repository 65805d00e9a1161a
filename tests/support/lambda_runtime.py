"""A local Python runtime image for moto's Lambda backend, built from nothing: no registry.

moto (``moto/awslambda/models.py``, ``_invoke_lambda``) runs every invocation as a container
of ``MOTO_DOCKER_LAMBDA_IMAGE`` with the function's zip unpacked at ``/var/task`` and its
layers at ``/opt``, the command ``[HANDLER, EVENT_JSON]`` and the ``AWS_LAMBDA_*`` variables;
it reads the container's stderr then stdout, takes the last line as the response, the lines
before it as the log tail, and a non-zero exit as a function error. It fills ``/var/task``
through a ``busybox`` container (``sleep 100`` and ``put_archive``).

This module builds both from the project's bootstrapped base image (Debian with python3,
``corral.drivers.container.image``): ``docker.io/library/busybox:latest`` is a tag of it
(it has ``sleep``), and the runtime image adds :data:`BOOTSTRAP`, which imports the handler
and really runs it. Nothing is echoed.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from corral.drivers.container.engine import Engine

from .engines import IMAGE

RUNTIME_IMAGE = "localhost/corral-test-lambda:python3.11"
BUSYBOX = "docker.io/library/busybox:latest"

BOOTSTRAP = r"""
import importlib, json, os, sys, time, traceback, uuid

def main():
    handler, event = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    sys.path[:0] = ["/var/task", "/opt/python"]
    module, _, name = handler.rpartition(".")
    started = time.monotonic()
    timeout = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "3"))

    class Context:
        function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        aws_request_id = str(uuid.uuid4())

        def get_remaining_time_in_millis(self):
            return int((timeout - (time.monotonic() - started)) * 1000)

    out = sys.stdout
    sys.stdout = sys.stderr  # the handler's prints are the log, the last stdout line the result
    try:
        result = getattr(importlib.import_module(module), name)(event, Context())
    except Exception as exc:
        traceback.print_exc()
        out.write(json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__}) + "\n")
        out.flush()
        sys.exit(1)
    out.write(json.dumps(result) + "\n")
    out.flush()

main()
"""

CONTAINERFILE = f"""FROM {IMAGE}
COPY bootstrap.py /var/runtime/bootstrap.py
ENTRYPOINT ["python3", "-u", "/var/runtime/bootstrap.py"]
"""


def build(engine: Engine) -> str:
    """Tag busybox and build :data:`RUNTIME_IMAGE` (the engine fixture bootstrapped IMAGE)."""
    subprocess.run(engine.argv("tag", IMAGE, BUSYBOX), check=True, capture_output=True)
    with tempfile.TemporaryDirectory(prefix="lambda-runtime-") as ctx:
        with open(os.path.join(ctx, "bootstrap.py"), "w") as fh:
            fh.write(BOOTSTRAP)
        with open(os.path.join(ctx, "Containerfile"), "w") as fh:
            fh.write(CONTAINERFILE)
        proc = subprocess.run(
            engine.argv(
                "build", "-t", RUNTIME_IMAGE, "-f", os.path.join(ctx, "Containerfile"), ctx
            ),
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            timeout=300,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"lambda runtime image build failed: {proc.stderr[-2000:]}")
    return RUNTIME_IMAGE
