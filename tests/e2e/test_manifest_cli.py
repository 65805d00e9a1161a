"""``corral config`` on hostile manifests, through the real CLI in a subprocess: exit 2, one
line on stderr naming the problem, no traceback, within seconds (issue 8: 17 of 221 fuzzed
files printed a traceback)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.e2e.conftest import CORRAL
from tests.unit.test_manifest_bounds import ABSURD
from tests.unit.test_manifest_fuzz import mangled
from tests.unit.test_manifest_hostile import CASES

SAMPLE = {**CASES, **{f"absurd_{name}": (f"agents:\n  w:\n    command: echo\n{agent}", expected)
                      for name, (agent, expected) in ABSURD.items()}}


def _config(path: Path | str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run([*CORRAL, "-f", str(path), "config"], cwd=cwd, capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL,
                          env={**os.environ, "NO_COLOR": "1"})
    return proc, time.monotonic() - started


def _one_line(proc: subprocess.CompletedProcess[str], elapsed: float) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("corral: ")
    assert elapsed < 5.0, f"{elapsed:.1f}s"  # ~0.4 s of it is starting Python and imports
    return lines[0]


@pytest.mark.parametrize("name", SAMPLE)
def test_config_on_a_hostile_manifest_is_one_line_and_exit_2(name: str, tmp_path: Path) -> None:
    text, expected = SAMPLE[name]
    (tmp_path / "corral.yaml").write_text(text)
    line = _one_line(*_config(tmp_path / "corral.yaml", tmp_path))
    assert expected in line


@pytest.mark.parametrize(("make", "expected"), [
    ("fifo", "a FIFO"), ("device", "not a regular file"), ("not_utf8", "is not UTF-8"),
    ("huge", "larger than 1024 KiB"), ("directory_without", "manifest not found"),
])  # fmt: skip
def test_config_on_a_file_that_is_no_manifest(make: str, expected: str, tmp_path: Path) -> None:
    path: Path | str = tmp_path / "corral.yaml"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "device":
        path = "/dev/zero"
    elif make == "not_utf8":
        Path(path).write_bytes(b"agents: {w: {command: \xff}}\n")
    elif make == "huge":
        Path(path).write_text("agents: {w: {command: echo}}\n" + "#" * (2 << 20) + "\n")
    else:
        path = tmp_path
    proc, elapsed = _config(path, tmp_path)
    assert expected in _one_line(proc, elapsed)  # not found too: a usage error, exit 2


@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(text=mangled())
def test_config_on_fuzzed_manifests_never_prints_a_traceback(text: str, tmp_path: Path) -> None:
    (tmp_path / "corral.yaml").write_text(text)
    proc, elapsed = _config(tmp_path / "corral.yaml", tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 2), proc.stderr
    assert elapsed < 10.0
    if proc.returncode == 2:
        head, *rest = proc.stderr.splitlines()
        assert head.startswith("corral: ")
        assert all(line.startswith("  ") for line in rest)  # one problem a line, indented
        assert len(rest) <= 51  # the first 50 problems and a count of the rest
