"""Each promise of the sandbox's view, proved with real bubblewrap: what a sandboxed command
can read, write, reach and see."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from corral.drivers.host import bwrap

BWRAP = bwrap.find_bwrap()
pytestmark = pytest.mark.skipif(BWRAP is None, reason="bubblewrap (bwrap) is not installed: "
                                "apt-get install bubblewrap (scripts/install.sh --test does)")


class Layout:
    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.project = root / "project"
        self.state = self.project / ".corral"
        self.mine = self.project / "mine"
        self.other = self.project / "other"
        self.data = self.state / "data" / "mine"
        self.secrets = self.state / "run" / "mine.1" / "secrets"
        for d in (self.home, self.mine, self.other, self.data, self.secrets):
            d.mkdir(parents=True)
        (self.home / ".aws-credentials").write_text("home-secret\n")
        (self.other / "token").write_text("other-agent-secret\n")
        (self.state / "state.db").write_text("daemon state\n")
        (self.secrets / "api_key").write_text("my-secret\n")
        (self.project / "shared.txt").write_text("project file\n")

    def view(self, **changes: object) -> bwrap.View:
        fields: dict[str, object] = {
            "workdir": str(self.mine),
            "hidden": (*bwrap.default_hidden({"HOME": str(self.home)}), str(self.project),
                       str(self.state)),
            "writable": (str(self.data),),
            "secrets_dir": str(self.secrets),
        }
        fields.update(changes)
        return bwrap.View(**fields)  # type: ignore[arg-type]


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


def run(view: bwrap.View, script: str) -> subprocess.CompletedProcess[str]:
    assert BWRAP is not None
    cmd = bwrap.argv(view, ["/bin/sh", "-c", script], bwrap=BWRAP)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin"})


def test_other_agents_files_home_and_state_are_hidden(layout: Layout) -> None:
    out = run(layout.view(), f"""
        cat {layout.other}/token; cat {layout.home}/.aws-credentials;
        cat {layout.state}/state.db; cat {layout.project}/shared.txt; ls -A /root
        echo done""")
    assert out.returncode == 0, out.stderr
    for secret in ("other-agent-secret", "home-secret", "daemon state", "project file"):
        assert secret not in out.stdout
    assert out.stdout.strip().endswith("done")
    assert out.stdout.strip() == "done", "/root must look empty"


def test_writes_only_to_workdir_data_dir_and_tmp(layout: Layout) -> None:
    out = run(layout.view(), f"""
        echo w > {layout.mine}/out.txt && echo workdir-ok
        echo w > {layout.data}/kept.txt && echo data-ok
        echo w > /tmp/scratch && echo tmp-ok
        echo w > {layout.other}/evil 2>/dev/null && echo other-WRITTEN
        echo w > /etc/evil 2>/dev/null && echo etc-WRITTEN
        echo w > {layout.project}/evil 2>/dev/null && echo project-WRITTEN
        true""")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["workdir-ok", "data-ok", "tmp-ok"]
    assert (layout.mine / "out.txt").read_text() == "w\n"
    assert (layout.data / "kept.txt").exists()
    assert not (layout.other / "evil").exists() and not (layout.project / "evil").exists()
    assert not Path("/tmp/scratch").exists() or Path("/tmp/scratch").read_text() != "w\n"


def test_own_secrets_are_readable_at_run_secrets(layout: Layout) -> None:
    out = run(layout.view(), "cat /run/secrets/api_key; ls /run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["my-secret", "secrets"], "only /run/secrets is in /run"


def _listener() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def test_network_none_reaches_nothing_and_host_reaches_loopback(layout: Layout) -> None:
    server = _listener()
    port = server.getsockname()[1]
    probe = f"(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo reached || echo refused"
    try:
        none = subprocess.run(
            bwrap.argv(layout.view(), ["/bin/bash", "-c", probe], bwrap=BWRAP or "bwrap"),
            capture_output=True, text=True, timeout=30)
        host = subprocess.run(
            bwrap.argv(layout.view(network="host"), ["/bin/bash", "-c", probe],
                       bwrap=BWRAP or "bwrap"),
            capture_output=True, text=True, timeout=30)
    finally:
        server.close()
    assert none.stdout.strip() == "refused", none.stderr
    assert host.stdout.strip() == "reached", host.stderr


def test_other_processes_are_invisible(layout: Layout) -> None:
    host_pids = [p for p in os.listdir("/proc") if p.isdigit()]
    out = run(layout.view(),
              f"test -e /proc/{os.getpid()} && echo SEEN; ls /proc | grep -c '^[0-9]'")
    assert out.returncode == 0, out.stderr
    assert "SEEN" not in out.stdout
    # bwrap's init, sh, ls and grep: a handful, however many the host runs
    assert int(out.stdout.split()[-1]) <= 5 < len(host_pids)


def test_no_capability_to_unmount_what_hides_the_home(layout: Layout) -> None:
    out = run(layout.view(), f"umount {layout.home} 2>/dev/null && echo UNMOUNTED; "
                             f"mount -o remount,rw / 2>/dev/null && echo REMOUNTED; "
                             f"cat {layout.home}/.aws-credentials 2>/dev/null; echo end")
    assert out.stdout.split() == ["end"], out.stdout


def test_interpreter_under_a_hidden_home_is_shown_read_only(layout: Layout,
                                                           tmp_path: Path) -> None:
    prefix = layout.home / "opt" / "tool"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    (prefix / "lib" / "data.txt").write_text("tool data\n")
    exe = prefix / "bin" / "tool"
    exe.write_text(f"#!/bin/sh\ncat {prefix}/lib/data.txt\n")
    exe.chmod(0o755)
    assert bwrap.prefix_of(str(exe)) == str(prefix)
    view = layout.view(read_only=(bwrap.prefix_of(str(exe)),))
    out = run(view, f"{exe}; echo x > {prefix}/lib/data.txt 2>/dev/null && echo WRITTEN; "
                    f"cat {layout.home}/.aws-credentials")
    assert out.stdout.split() == ["tool", "data"], out.stderr


def test_sandbox_path_drops_hidden_entries() -> None:
    path = "/root/.pyenv/shims:/usr/local/bin:/home/u/bin:/usr/bin"
    assert bwrap.sandbox_path(path, ["/root", "/home"], ["/venv/bin"]) == \
        "/venv/bin:/usr/local/bin:/usr/bin"


def test_venv_base_reads_pyvenv_cfg(tmp_path: Path) -> None:
    (tmp_path / "pyvenv.cfg").write_text("home = /root/.pyenv/versions/3.11.7/bin\n")
    assert bwrap.venv_base(str(tmp_path)) == "/root/.pyenv/versions/3.11.7"
    assert bwrap.venv_base(str(tmp_path / "missing")) is None


def test_unknown_network_is_refused(layout: Layout) -> None:
    with pytest.raises(ValueError, match="none, host"):
        bwrap.argv(layout.view(network="bridge"), ["true"])


def test_a_tool_under_a_masked_dir_is_shown_to_the_driver_s_sandbox(tmp_path: Path) -> None:
    """/tmp is private in a sandbox; a command installed there (a checkout's venv, say) is
    shown read-only, the link and its target both."""
    import asyncio

    from corral.drivers.base import Task
    from corral.drivers.sandbox import SandboxDriver
    from corral.manifest.spec import Agent

    assert str(tmp_path).startswith("/tmp/"), "pytest's tmp_path lives under /tmp here"
    real = tmp_path / "opt" / "bin" / "tool-real"
    real.parent.mkdir(parents=True)
    real.write_text("#!/bin/sh\necho tool ran in $(pwd)\n")
    real.chmod(0o755)
    link = tmp_path / "venv" / "bin" / "tool"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    work = tmp_path / "work"
    work.mkdir()
    task = Task(project="t", agent="a", instance="a.1", index=1,
                spec=Agent(command=["tool"], isolation="sandbox"), workdir=str(work),
                run_dir=str(tmp_path / "run" / "a.1"), cache_dir=str(tmp_path / "cache"),
                env={"PATH": f"{link.parent}:/usr/bin:/bin", "HOME": str(tmp_path / "home")})
    lines: list[bytes] = []

    class Out:
        def feed(self, stream: str, data: bytes) -> None:
            lines.append(data)

        def eof(self, stream: str) -> None:
            pass

    async def go() -> int | None:
        driver = SandboxDriver()
        await driver.prepare(task, None)
        handle = await driver.start(task, Out())
        return (await driver.wait(handle)).code

    assert asyncio.run(go()) == 0, b"".join(lines)
    assert b"".join(lines) == f"tool ran in {work}\n".encode()
