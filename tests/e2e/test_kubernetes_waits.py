"""The kubectl steps of ``depends_on`` (``ordering.py``'s init containers), taken from the
exported objects as they are and run by the real kubectl, against the fake API server of
``tests/support/kube_fake.py`` (discovery, watches from a ``resourceVersion``): each waits
while its dependency is missing or not yet as the condition says, and ends once it is. The
dependencies are applied with ``kubectl apply --server-side`` (``--validate=false``: the fake
serves no OpenAPI document) after the waits started."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.convert.base import ExportOptions
from corral.convert.export.kubernetes import objects
from corral.convert.report import Report
from corral.manifest.loader import load_text
from tests.support.kube import fake_cluster

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl on PATH")]

Obj = dict[str, Any]
BOUND = 120.0  # only so a broken wait cannot hang the run; never what is asserted

FLEET = """\
name: shop
agents:
  db:
    isolation: container
    container: {image: "postgres:16"}
    command: ["postgres"]
  migrate:
    isolation: container
    container: {image: "alpine:3"}
    command: ["echo", "migrated"]
    restart: "no"
  web:
    isolation: container
    container: {image: "nginx:1"}
    command: ["nginx", "-g", "daemon off;"]
    depends_on:
      db: {condition: started}
      migrate: {condition: completed_successfully}
"""


class Fake:
    """The fake's port, and kubectl's environment: its kubeconfig, a HOME of the test's own
    (kubectl caches discovery there)."""

    def __init__(self, root: Path, port: int, config: Path) -> None:
        self.root, self.port = root, port
        self.env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(root)}

    def requests(self) -> list[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/fake/requests") as r:
            seen: list[str] = json.loads(r.read())
        return seen

    def apply(self, obj: Obj) -> None:
        path = self.root / f"{obj['kind']}-{obj['metadata']['name']}.json"
        path.write_text(json.dumps(obj))
        done = subprocess.run(["kubectl", "apply", "--server-side", "--validate=false", "-f",
                               str(path)], env=self.env, capture_output=True, text=True,
                              timeout=BOUND)
        assert done.returncode == 0, done.stderr

    @contextlib.contextmanager
    def running(self, steps: dict[str, list[str]],
                step: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
        """The step's command, its output (both streams) in a file; stopped by its PID if it
        is still running at the end."""
        command, out = steps[step], self.root / f"{step}.out"
        with out.open("wb") as sink:
            proc = subprocess.Popen(command, env=self.env, stdout=sink,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            yield proc, out
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Fake]:
    with fake_cluster(tmp_path) as (port, config):
        yield Fake(tmp_path, port, config)


def _until(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes],
           out: Path) -> None:
    """Until ``ready``, while the step still runs."""
    deadline = time.monotonic() + BOUND
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited {proc.returncode} before {what}:\n"
                                 f"{out.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {BOUND:.0f}s: {what}")
        time.sleep(0.1)


def _exported(tmp: Path) -> dict[tuple[str, str], Obj]:
    objs = objects(load_text(FLEET, project_dir=str(tmp)), ExportOptions(),
                   Report("export kubernetes"))
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def _steps(objs: dict[tuple[str, str], Obj]) -> dict[str, list[str]]:
    pod = objs["Deployment", "web"]["spec"]["template"]["spec"]
    return {c["name"]: c["command"] for c in pod["initContainers"]}


def _with(obj: Obj, **spec: Any) -> Obj:
    return {**obj, "spec": {**obj["spec"], **spec}}


def _with_image(obj: Obj, image: str) -> Obj:
    template = obj["spec"]["template"]
    (container,) = template["spec"]["containers"]
    pod = {**template["spec"], "containers": [{**container, "image": image}]}
    return _with(obj, template={**template, "spec": pod})


def _looked_for(fake: Fake, path: str, times: int) -> Callable[[], bool]:
    return lambda: fake.requests().count(f"GET {path}") >= times


def test_a_deployment_is_waited_for_until_it_exists_then_until_its_replicas_are_available(
        fake: Fake) -> None:
    objs = _exported(fake.root)
    steps = _steps(objs)
    db = objs["Deployment", "db"]
    path = "/apis/apps/v1/namespaces/team/deployments/db"
    with fake.running(steps, "find-db") as (find, out):
        _until("kubectl looking for deployment/db twice", _looked_for(fake, path, 2), find, out)
        assert find.poll() is None  # a missing object: it looks again, it does not fail
        fake.apply(_with_image(db, "postgres:never-ready"))
        assert find.wait(timeout=BOUND) == 0
    assert out.read_text().splitlines() == ["deployment.apps/db condition met"]

    with fake.running(steps, "wait-db") as (wait, out):
        waiting = 'Waiting for deployment "db" rollout to finish: 0 of 1 updated replicas ' \
                  "are available..."
        _until("rollout status waiting", lambda: waiting in out.read_text(),
               wait, out)
        assert wait.poll() is None
        fake.apply(db)  # the exported image: its pod gets ready
        assert wait.wait(timeout=BOUND) == 0
    assert out.read_text().splitlines() == [waiting, 'deployment "db" successfully rolled out']

    # once available, both steps end at once (a pod that starts after its dependency)
    for step in ("find-db", "wait-db"):
        again = subprocess.run(steps[step], env=fake.env, capture_output=True, text=True,
                               timeout=BOUND)
        assert again.returncode == 0, again.stderr


def test_a_job_is_waited_for_until_it_exists_then_until_it_completes(fake: Fake) -> None:
    objs = _exported(fake.root)
    steps = _steps(objs)
    migrate = objs["Job", "migrate"]
    path = "/apis/batch/v1/namespaces/team/jobs/migrate"
    with fake.running(steps, "find-migrate") as (find, out):
        _until("kubectl looking for job/migrate twice", _looked_for(fake, path, 2), find, out)
        assert find.poll() is None
        fake.apply(_with(migrate, suspend=True))  # no pod yet: not complete
        assert find.wait(timeout=BOUND) == 0
    assert out.read_text().splitlines() == ["job.batch/migrate condition met"]

    watch = "/apis/batch/v1/namespaces/team/jobs?"
    with fake.running(steps, "wait-migrate") as (wait, out):
        # it watches only after the list showed the Job not complete
        _until("kubectl watching job/migrate", lambda: any(
            r.startswith(f"GET {watch}") and "watch=true" in r
            and "fieldSelector=metadata.name%3Dmigrate" in r for r in fake.requests()),
               wait, out)
        assert wait.poll() is None
        fake.apply(_with(migrate, suspend=False))  # its pod runs and succeeds
        assert wait.wait(timeout=BOUND) == 0
    assert out.read_text().splitlines() == ["job.batch/migrate condition met"]


def test_a_waiter_the_api_server_refuses_fails_at_once_and_says_so(tmp_path: Path) -> None:
    """kubectl sends a token only over https: this fake serves it. The token ``forbidden``
    may read discovery (as any token may) and nothing else."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make the fake's certificate")
    objs = _exported(tmp_path)
    with fake_cluster(tmp_path, tls=True) as (port, config):
        fake = Fake(tmp_path, port, config)
        fake.apply(objs["Deployment", "db"])
        fake.apply(objs["Job", "migrate"])
        for name, command in _steps(objs).items():
            refused = subprocess.run([*command, "--context", "forbidden", "--namespace",
                                      "team"], env=fake.env, capture_output=True, text=True,
                                     timeout=BOUND)
            assert refused.returncode == 1, name
            assert refused.stderr.startswith("Error from server (Forbidden): "), name
