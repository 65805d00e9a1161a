"""``corral top`` against a real fleet (the real CLI and daemon): driven by Textual's own pilot
in this process, and once as a user runs it, in a terminal (tmux: send-keys, capture-pane).

Nothing is timed: each step waits, bounded, for what the screen or the daemon must show.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CORRAL, Project, running

pytestmark = pytest.mark.e2e

# the tui extra; the test of its absence runs without it
needs_textual = pytest.mark.skipif(importlib.util.find_spec("textual") is None,
                                   reason="textual not installed: pip install -e '.[tui]'")

FLEET = """
    name: topfleet
    agents:
      idle:
        command: sleep 300
      talker:
        command: sh -c 'i=0; while true; do i=$$((i+1)); echo "said $$i"; sleep 0.2; done'
"""
WAIT = 30.0


def _up(project: Project) -> None:
    project.write(FLEET)
    project.corral("up", "-d")
    project.wait_for(lambda rows: {r["state"] for r in rows.values()} == {"running"},
                     what="the fleet running")


# --- Textual's pilot -------------------------------------------------------------------------

def _table(app: Any) -> dict[str, list[str]]:
    """The table as shown: each row's cells by its instance name, in the table's order."""
    from textual.widgets import DataTable

    table = app.query_one("#fleet", DataTable)
    return {str(row.key.value): [str(cell) for cell in table.get_row(row.key)]
            for row in table.ordered_rows}


async def _until(pilot: Any, check: Callable[[], bool], what: str,
                 timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; the table: {_table(pilot.app)}")
        await pilot.pause(0.05)


def _column(name: str) -> int:
    from corral.cli.top.fleet import COLUMNS

    return [key for key, _ in COLUMNS].index(name)


def _cell(app: Any, instance: str, column: str) -> str | None:
    row = _table(app).get(instance)
    return row[_column(column)] if row is not None else None


def _drive(project: Project, scenario: Callable[[Any], Awaitable[None]]) -> Any:
    from corral.cli.top.app import TopApp

    app = TopApp(str(project.state_dir), "topfleet")

    async def run() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await scenario(pilot)

    asyncio.run(run())
    return app


async def _select(pilot: Any, instance: str) -> None:
    from textual.widgets import DataTable

    await _until(pilot, lambda: instance in _table(pilot.app), f"{instance} in the table")
    await _until(pilot, lambda: isinstance(pilot.app.focused, DataTable), "the table's focus")
    for _ in range(len(_table(pilot.app))):
        if pilot.app.selected() == instance:
            return
        await pilot.press("down")
    assert pilot.app.selected() == instance


@needs_textual
def test_top_shows_the_fleet_follows_logs_and_drives_the_daemon(project: Project) -> None:
    _up(project)
    before = project.ps()

    async def scenario(pilot: Any) -> None:
        app = pilot.app
        await _until(pilot, lambda: {"idle.1", "talker.1"} <= set(_table(app)),
                     "both instances")
        for name in ("idle.1", "talker.1"):
            row = _table(app)[name]
            assert row[_column("state")] == "running"
            assert row[_column("pid")] == str(before[name]["pid"])
        # CPU and memory come with the slow poll of the daemon's usage samples
        await _until(pilot, lambda: (_cell(app, "talker.1", "mem") or "-") != "-"
                     and (_cell(app, "talker.1", "cpu") or "-").endswith("%"),
                     "talker.1's CPU and memory")

        await _select(pilot, "talker.1")
        from textual.widgets import Log

        pane = app.query_one("#logs", Log)
        await _until(pilot, lambda: any(line.startswith("talker.1") and "said" in line
                                        for line in pane.lines), "talker's lines in the pane")
        assert pane.border_title == "logs of talker"
        # the history, then the stream: each line once, none missing between the two
        first = len(pane.lines)
        await _until(pilot, lambda: len(pane.lines) > first + 3, "more of talker's lines")
        said = [int(line.rpartition(" ")[2]) for line in pane.lines if "| said" in line]
        assert said == list(range(said[0], said[0] + len(said))), said

        await pilot.press("r")
        await _until(pilot, lambda: _cell(app, "talker.1", "restarts") == "1",
                     "talker.1's restarts at 1")
        after = project.ps()["talker.1"]
        assert after["restarts"] == 1
        await _until(pilot, lambda: _cell(app, "talker.1", "pid") == str(
            project.ps()["talker.1"]["pid"]) != str(before["talker.1"]["pid"]),
                     "talker.1's new pid")
        # the lines of its new run follow in the pane
        seen = len(pane.lines)
        await _until(pilot, lambda: len(pane.lines) > seen, "the new run's lines")

        await pilot.press("s")
        await _until(pilot, lambda: _cell(app, "talker.1", "state") == "stopped",
                     "talker.1 stopped")
        assert project.ps()["talker.1"]["state"] == "stopped"
        await pilot.press("S")
        await _until(pilot, lambda: _cell(app, "talker.1", "state") == "running",
                     "talker.1 running again")

        await pilot.press("slash")
        await pilot.press(*"idle")
        await _until(pilot, lambda: list(_table(app)) == ["idle.1"], "only idle.1 shown")
        await pilot.press("escape")
        await _until(pilot, lambda: set(_table(app)) == {"idle.1", "talker.1"},
                     "the whole fleet again")

        await _select(pilot, "talker.1")
        await pilot.press("plus")
        await _until(pilot, lambda: "talker.2" in _table(app), "talker.2 in the table")
        assert project.ps()["talker.2"]["agent"] == "talker"
        await _until(pilot, lambda: _cell(app, "talker.2", "state") == "running",
                     "talker.2 running")
        await _select(pilot, "talker.2")
        await pilot.press("minus")
        await _until(pilot, lambda: "talker.2" not in _table(app), "talker.2 gone")
        assert set(project.ps()) == {"idle.1", "talker.1"}
        await pilot.press("minus")  # never below one replica
        await pilot.press("q")

    app = _drive(project, scenario)
    assert app.return_code in (0, None)
    assert set(project.ps()) == {"idle.1", "talker.1"}
    # its streams were closed with it: no thread of it reads the daemon any longer
    assert not [t for t in threading.enumerate() if t.name.startswith("corral-top-")]


@needs_textual
def test_top_ends_in_one_line_when_the_daemon_goes(project: Project) -> None:
    _up(project)

    async def scenario(pilot: Any) -> None:
        await _until(pilot, lambda: "idle.1" in _table(pilot.app), "idle.1")
        project.corral("down")
        deadline = time.monotonic() + WAIT
        while pilot.app.is_running and time.monotonic() < deadline:
            await pilot.pause(0.05)

    app = _drive(project, scenario)
    assert app.return_code == 3
    assert "went away" in str(app.problem) and "corral up -d" in str(app.problem)


# --- the command's own errors ----------------------------------------------------------------

@needs_textual
def test_top_without_a_daemon_says_how_to_start_one(project: Project) -> None:
    project.write(FLEET)
    proc = project.corral("top", check=False)
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        "corral: the corral daemon is not running for this project: start it with "
        "'corral up -d'"]


@needs_textual
def test_top_off_a_terminal_says_it_needs_one(project: Project) -> None:
    _up(project)
    proc = project.corral("top", check=False)  # stdin and stderr are no terminal here
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "corral: corral top needs a terminal (it draws on the one it runs in): run it in one; "
        "'corral ps' and 'corral events -f' print as text"]


def test_top_without_textual_names_the_extra_to_install(project: Project,
                                                        tmp_path: Path) -> None:
    """An interpreter where ``import textual`` fails, as it does where the extra is missing."""
    project.write(FLEET)
    shadow = tmp_path / "no-textual" / "textual"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'textual'\", name='textual')\n")
    path = os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])
    proc = project.corral("top", check=False, env={"PYTHONPATH": path})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "corral: corral top needs Textual, which is not installed: pip install 'corral[tui]'"]


# --- as a user runs it: tmux -----------------------------------------------------------------

class Tmux:
    """A tmux server of the test's own (a private socket name): no other tmux is touched."""

    def __init__(self) -> None:
        self.socket = f"corral-top-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.server_pid: int | None = None
        self.socket_path: str | None = None

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, check=True, timeout=30,
                              stdin=subprocess.DEVNULL).stdout

    def start(self, command: str, width: int, height: int) -> None:
        self("new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height), command)
        pid, _, path = self("display-message", "-p", "-t", "top",
                            "#{pid} #{socket_path}").strip().partition(" ")
        self.server_pid, self.socket_path = int(pid), path

    def screen(self) -> list[str]:
        return self("capture-pane", "-p", "-t", "top").splitlines()

    def footer(self) -> str:
        """The screen's last line that shows anything."""
        return next((line for line in reversed(self.screen()) if line.strip()), "")

    def row(self, instance: str) -> list[str] | None:
        """The cells of ``instance``'s row on the screen (split on blanks)."""
        for line in self.screen():
            cells = line.split()
            if cells and cells[0] == instance:
                return cells
        return None

    def until(self, check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n"
                                     + "\n".join(self.screen()))
            time.sleep(0.1)

    def kill(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self("kill-server")
        pid = self.server_pid
        deadline = time.monotonic() + 10
        while pid is not None and running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid is not None and running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.socket_path:  # tmux leaves its socket behind
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)


@needs_textual
@pytest.mark.skipif(shutil.which("tmux") is None,
                    reason="tmux not installed (scripts/install.sh --test installs it)")
def test_top_in_a_terminal_as_a_user_runs_it(project: Project) -> None:
    _up(project)
    before = project.ps()
    done = project.root / "top.exit"
    env = shlex.quote(f"PYTHONPATH={os.environ.get('PYTHONPATH', '')}")
    argv = shlex.join([*CORRAL, "-f", str(project.manifest), "top"])
    tmux = Tmux()
    try:
        # the exit code is written once top ends; the pane stays for the last capture
        tmux.start(f"cd {shlex.quote(str(project.root))} && env {env} {argv}; "
                   f"echo $? > {shlex.quote(str(done))}.new && mv {shlex.quote(str(done))}.new "
                   f"{shlex.quote(str(done))}; sleep 600",
                   width=120, height=40)
        tmux.until(lambda: tmux.row("idle.1") is not None and tmux.row("talker.1") is not None,
                   "both instances on the screen")
        assert tmux("display-message", "-p", "-t", "top",
                    "#{window_width}x#{window_height}").split() == ["120x40"]
        assert (tmux.row("talker.1") or [])[1] == "running"
        tmux.until(lambda: "r Restart" in tmux.footer() and "q Quit" in tmux.footer(),
                   "the keys in the footer")

        tmux("send-keys", "-t", "top", "Down")
        tmux.until(lambda: any("logs of talker" in line for line in tmux.screen()),
                   "the pane following talker")
        tmux.until(lambda: any(line.startswith("talker.1 | said") for line in tmux.screen()),
                   "talker's lines in the pane")

        tmux("send-keys", "-t", "top", "r")
        tmux.until(lambda: (tmux.row("talker.1") or ["", "", "", ""])[3] == "1",
                   "talker.1's restarts at 1")
        assert project.ps()["talker.1"]["pid"] != before["talker.1"]["pid"]
        tmux("send-keys", "-t", "top", "s")
        tmux.until(lambda: (tmux.row("talker.1") or ["", ""])[1] == "stopped",
                   "talker.1 stopped")
        tmux("send-keys", "-t", "top", "S")
        tmux.until(lambda: (tmux.row("talker.1") or ["", ""])[1] == "running",
                   "talker.1 running again")

        tmux("send-keys", "-t", "top", "/", "i", "d")  # typed at once: the box has them all
        tmux.until(lambda: tmux.row("talker.1") is None and tmux.row("idle.1") is not None,
                   "the filter leaving idle.1 alone")
        tmux("send-keys", "-t", "top", "Enter")
        tmux.until(lambda: "q Quit" in tmux.footer(), "the table's keys back in the footer")
        tmux("send-keys", "-t", "top", "C-c")  # as in top (the pilot's test quits with q)
        tmux.until(done.exists, "top to exit")
        assert done.read_text().strip() == "0"
    finally:
        tmux.kill()
