"""Compose's manners through the real CLI: global options after the command,
``--project-directory``, usage errors exit 2, ``run AGENT -- ARGS`` replaces the command,
``exec`` gets the running agent's secrets, unset ``$VAR`` warns once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import CORRAL, Project, tear_down

SLEEPER = """
    name: manners
    agents:
      a: {command: [sleep, "300"]}
"""


def _corral(*args: str, cwd: Path, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CORRAL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_global_options_after_the_command(project: Project, tmp_path: Path) -> None:
    project.write(SLEEPER)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    file = str(project.manifest)
    up = _corral("up", "-d", "-f", file, cwd=elsewhere)
    assert up.returncode == 0, up.stderr
    ps = _corral("ps", "--json", "-f", file, cwd=elsewhere)  # the fast path
    assert ps.returncode == 0, ps.stderr
    assert [r["name"] for r in json.loads(ps.stdout)] == ["a.1"]
    assert _corral("ps", "--file", file, "a", cwd=elsewhere).returncode == 0
    stopped = _corral("stop", "a", "-f", file, cwd=elsewhere)
    assert stopped.returncode == 0 and "a.1: stopped" in stopped.stdout
    # `logs -f` stays compose's follow; --file names the manifest there
    logs = _corral("logs", "--file", file, "--json", "a", cwd=elsewhere)
    assert logs.returncode == 0, logs.stderr
    down = _corral("down", "--file", file, cwd=elsewhere)
    assert down.returncode == 0, down.stderr


def test_project_directory(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "app").mkdir(parents=True)
    (proj / "app" / "hello.txt").write_text("hello from the project dir\n")
    conf = tmp_path / "conf"
    conf.mkdir()
    text = textwrap.dedent("""
        agents:
          hello: {workdir: app, command: [cat, hello.txt]}
    """)
    (proj / "corral.yaml").write_text(text)
    (conf / "corral.yaml").write_text(text)
    # the default manifest is looked for there; relative paths start there
    ran = _corral("--project-directory", "proj", "run", "hello", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "hello from the project dir\n"
    # another manifest, the project's directory given after the command
    config = _corral("config", "-f", "conf/corral.yaml", "--project-directory", "proj",
                     cwd=tmp_path)
    assert config.returncode == 0, config.stderr
    assert f"project_dir: {proj}\n" in config.stdout
    assert "name: proj\n" in config.stdout  # named after it, as compose names a project
    assert f"state_dir: {proj / '.corral'}\n" in config.stdout
    ps = _corral("ps", "--project-directory", "proj", cwd=tmp_path)  # the fast path
    assert ps.returncode == 3 and "daemon is not running" in _one_line(ps)
    fleet = Project(proj)
    try:
        up = _corral("--project-directory", "proj", "up", "-d", cwd=tmp_path)
        assert up.returncode == 0, up.stderr
        assert fleet.daemon_pid() is not None  # its state dir is the project dir's
        rows = _corral("ps", "--json", "--project-directory", "proj", cwd=tmp_path)
        assert [r["name"] for r in json.loads(rows.stdout)] == ["hello.1"], rows.stderr
        logs = _corral("logs", "--project-directory", "proj", "--json", cwd=tmp_path)
        assert "hello from the project dir" in logs.stdout, logs.stderr
        down = _corral("down", "--project-directory", "proj", cwd=tmp_path)
        assert down.returncode == 0, down.stderr
    finally:
        tear_down(fleet, proj)
    bad = _corral("ps", "--project-directory", "nowhere", cwd=tmp_path)
    assert bad.returncode == 2
    assert _one_line(bad) == ("corral: --project-directory nowhere: not a directory: "
                              "pass an existing directory")


def test_usage_errors_exit_2(project: Project, tmp_path: Path) -> None:
    project.write(SLEEPER)
    scale = project.corral("scale", "a=x", check=False)
    assert scale.returncode == 2
    assert _one_line(scale) == ("corral: cannot read 'a=x': write AGENT=N, e.g. "
                                "corral scale web=3")
    bare = project.corral("exec", "a", check=False)
    assert bare.returncode == 2
    assert _one_line(bare) == "corral: no command given: write: corral exec a -- CMD ARGS"
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv in (["ps"], ["logs"], ["up", "-d"], ["ps", "-f", "missing.yaml"]):
        proc = _corral(*argv, cwd=empty)
        assert proc.returncode == 2, (argv, proc.stderr)
        _one_line(proc)
    assert project.daemon_pid() is None  # nothing was started on the way


def test_unset_variable_warns_once_and_dollar_dollar_is_literal(project: Project) -> None:
    project.write("""
        name: vars
        agents:
          show:
            command: [python3, -c, "import sys; print(sys.argv[1:])", "${CORRAL_NOPE}x",
                      "$CORRAL_NOPE", "$$CORRAL_LIT"]
            env: {ALSO: "$CORRAL_NOPE"}
    """)
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_NOPE"}
    ran = subprocess.run([*CORRAL, "-f", str(project.manifest), "run", "show"],
                         cwd=project.root, capture_output=True, text=True, timeout=120,
                         env=env, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "['x', '', '$CORRAL_LIT']\n"  # $$ reaches the agent as $
    assert ran.stderr.splitlines() == [
        'WARN: The "CORRAL_NOPE" variable is not set. Defaulting to a blank string.']
    given = project.corral("config", env={"CORRAL_NOPE": "set"})
    assert "WARN" not in given.stderr


def test_run_replaces_the_whole_command(project: Project) -> None:
    project.file("job.py", "print('the job itself')\n")
    project.write("""
        name: runargs
        agents:
          job: {command: [python3, job.py]}
          shelled: {command: "echo one && echo two", shell: true}
    """)
    assert project.corral("run", "job").stdout == "the job itself\n"
    replaced = project.corral("run", "job", "--", "sh", "-c", "echo replaced; echo $0")
    assert replaced.stdout == "replaced\nsh\n"  # not python3 sh -c ...
    # a shell agent's command goes too: ARGS run as given, not through its shell line
    assert project.corral("run", "shelled", "--", "echo", "a && b").stdout == "a && b\n"


@pytest.mark.parametrize("isolation", ["process", "sandbox"])
def test_exec_gets_the_running_agents_secrets(project: Project, isolation: str) -> None:
    if isolation == "sandbox" and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (scripts/install.sh --test installs it)")
    project.file("key.txt", "file-secret-value\n").chmod(0o600)
    project.write(f"""
        name: execsec
        secrets:
          token: {{environment: CORRAL_EXEC_TOKEN}}
          key: {{file: ./key.txt}}
        agents:
          w:
            isolation: {isolation}
            command: [sleep, "300"]
            secrets: [{{source: token, env: TOKEN}}, key]
    """)
    project.corral("up", "-d", env={"CORRAL_EXEC_TOKEN": "env-secret-value"})
    try:
        # a shell without the variable `up` had: exec gets what the running agent got
        shell = {k: v for k, v in os.environ.items() if k != "CORRAL_EXEC_TOKEN"}
        got = subprocess.run(
            [*CORRAL, "-f", str(project.manifest), "exec", "w", "--", "sh", "-c",
             'echo "$TOKEN"; cat "$CORRAL_SECRETS_DIR/key"'],
            cwd=project.root, capture_output=True, text=True, timeout=120, env=shell,
            stdin=subprocess.DEVNULL)
        assert got.returncode == 0, got.stderr
        assert got.stdout == "env-secret-value\nfile-secret-value"  # a file: stripped
    finally:
        tear_down(project, project.root)
    if isolation == "sandbox":
        return  # exec enters a running sandbox: with none, it says so
    # with nothing running, exec reads them from this shell, as run does
    alone = project.corral("exec", "w", "--", "sh", "-c", 'echo "$TOKEN"',
                           env={"CORRAL_EXEC_TOKEN": "from-this-shell"})
    assert alone.stdout == "from-this-shell\n"


def test_ctrl_c_of_start_wait_is_130_without_a_traceback(project: Project) -> None:
    """``start --wait`` runs on the lean fast path: Ctrl-C there is one line and 130 too."""
    import signal

    project.write("""
        name: ctrlc
        agents:
          never:
            class: service
            command: [sleep, "300"]
            readiness: {exec: ["false"], period: 0.2s}
          after:
            command: [sleep, "300"]
            depends_on: {never: {condition: healthy}}
    """)
    project.corral("up", "-d", "--timeout", "1", check=False)
    project.corral("stop", "after")
    proc = subprocess.Popen([*CORRAL, "-f", str(project.manifest), "start", "--wait", "after"],
                            cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    project.wait_for(lambda rows: rows["after.1"]["state"] != "stopped",
                     what="the start asked for")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines() == ["corral: interrupted"], err
