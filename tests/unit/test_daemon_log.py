"""daemon.log rotation, in a real process whose stdout and stderr are the log (as the CLI
starts the daemon): bounded on disk, C-level writes and children follow the new file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import os, subprocess, sys
    from corral.daemon import log as daemonlog
    assert daemonlog.install(sys.argv[1], max_bytes=10_000, keep=2)
    for i in range(3000):
        print(f"line {i:05d} " + "x" * 40)  # 3000 * 52 bytes: ~15 rotations' worth
        if i == 2990:
            os.write(2, b"from C after rotations\\n")
    subprocess.run(["sh", "-c", "echo from a child"])
    sys.stderr.write("last line\\n")
""")


def test_the_daemon_log_rotates_by_size_and_keeps_n_files(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    with open(log, "ab") as f:
        subprocess.run([sys.executable, "-c", SCRIPT, str(log)], stdout=f, stderr=f,
                       check=True, timeout=60)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["daemon.log", "daemon.log.1", "daemon.log.2"]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 10_000 + 60, p
    text = log.read_text()
    assert "from C after rotations" in text and "from a child" in text
    assert text.rstrip().endswith("last line")
    older = (tmp_path / "daemon.log.1").read_text().splitlines()
    assert older and all(line.startswith("line ") for line in older)


def test_a_daemon_in_a_terminal_keeps_its_streams(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    log.write_text("")
    out = subprocess.run([sys.executable, "-c",
                          "import sys; from corral.daemon import log as daemonlog; "
                          "print(daemonlog.install(sys.argv[1]))", str(log)],
                         capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
