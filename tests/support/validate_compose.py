"""``check_compose(directory)``: the real ``docker-compose config -q`` over an exported
``compose.yaml``; skips the test (with the reason) where docker-compose is not installed."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def check_compose(directory: str | os.PathLike[str]) -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (apt install docker-compose)")
    file = os.path.join(os.fspath(directory), "compose.yaml")
    done = subprocess.run([exe, "-f", file, "config", "-q"], capture_output=True, text=True,
                          check=False, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"docker-compose config rejected {file}:\n{done.stdout}{done.stderr}")
