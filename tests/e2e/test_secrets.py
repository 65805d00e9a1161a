"""Secrets through the real CLI and daemon: only the agents that list them get them, as env or
0400 files; their values reach no log, config, API answer, event or state store; a missing one
blocks its agent (and its dependents wait) while the rest runs."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from corral.api.client import Client
from corral.drivers.host.bwrap import find_bwrap
from tests.e2e.conftest import Project

SHOW = """\
import os, sys
d = os.environ.get("CORRAL_SECRETS_DIR", "")
files = sorted(os.listdir(d)) if d else []
print("files", files, "token-env", "API_TOKEN" in os.environ, flush=True)
for f in files:
    mode = oct(os.stat(os.path.join(d, f)).st_mode & 0o777)
    print("mode", f, mode, flush=True)
print("leak", open(os.path.join(d, "db")).read() if "db" in files else "-", flush=True)
print("leak-env", os.environ.get("API_TOKEN", "-"), flush=True)
"""


def _events(client: Client, into: list[dict[str, Any]], stop: threading.Event) -> None:
    for event in client.events(logs=True):
        into.append(event)
        if stop.is_set():
            return


def test_secrets_reach_only_their_agents_and_nothing_else(project: Project) -> None:
    (project.root / "db.txt").write_text("pw-from-file-5521\n")
    project.file("show.py", SHOW)
    project.write("""
        name: secrets
        secrets:
          db: {file: ./db.txt}
          token: {environment: MY_TOKEN_VAR}
        agents:
          user:
            class: compute
            command: python3 show.py
            secrets: [db, {source: token, env: API_TOKEN}]
          bystander:
            class: compute
            command: python3 show.py
    """)
    token = "tok-from-env-9931"
    up = project.corral("up", "-d", env={"MY_TOKEN_VAR": token})
    rows = project.wait_for(lambda r: all(x["state"] == "exited" for x in r.values()),
                            what="both agents")
    assert rows["user.1"]["exit_code"] == 0, project.records("user")
    said = [r["message"] for r in project.records("user")]
    assert "files ['db'] token-env True" in said
    assert "mode db 0o400" in said
    assert "leak ***" in said and "leak-env ***" in said, said
    other = [r["message"] for r in project.records("bystander")]
    assert "files [] token-env False" in other
    # nowhere at rest: logs, state store, config, API answers, the daemon's own log
    for path in project.state_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"pw-from-file-5521" not in data and token.encode() not in data, path
    assert token not in up.stdout + up.stderr
    config = project.corral("config").stdout
    assert "pw-from-file" not in config and token not in config
    client = Client(str(project.state_dir / "corral.sock"))
    for answer in (client.status(), client.exec_spec("user"), client.logs()):
        text = json.dumps(answer)
        assert "pw-from-file" not in text and token not in text


def test_events_never_carry_a_value(project: Project) -> None:
    project.write("""
        name: secretevents
        secrets:
          token: {command: ["sh", "-c", "echo ev-secret-7734"]}
        agents:
          talker:
            command: ["sh", "-c", "echo \\"say $$T\\"; sleep 300"]
            secrets: [{source: token, env: T}]
    """)
    project.corral("up", "-d")
    client = Client(str(project.state_dir / "corral.sock"))
    seen: list[dict[str, Any]] = []
    stop = threading.Event()
    reader = threading.Thread(target=_events, args=(client, seen, stop), daemon=True)
    reader.start()
    project.corral("restart", "talker")
    project.wait_for(lambda r: r["talker.1"]["restarts"] >= 1
                     and r["talker.1"]["state"] == "running", what="the restart")
    project.wait_for(lambda r: sum(e["event"] == "log" for e in seen) >= 1, what="a log event")
    stop.set()
    assert seen and all("ev-secret-7734" not in json.dumps(e) for e in seen)
    assert any(e["data"].get("message") == "say ***" for e in seen if e["event"] == "log")


def test_a_missing_secret_blocks_its_agent_and_dependents_wait(project: Project) -> None:
    project.write("""
        name: blocked
        secrets:
          key: {file: ./key.txt}
          vault: {command: ["sh", "-c", "echo locked >&2; exit 3"]}
        agents:
          needy:
            command: ["sh", "-c", "cat $$CORRAL_SECRETS_DIR/key; echo; sleep 300"]
            secrets: [key]
          after:
            command: sleep 300
            depends_on: [needy]
          vaulted:
            command: sleep 300
            secrets: [vault]
          free:
            command: sleep 300
    """)
    up = project.corral("up", "-d", check=False, timeout=60)
    assert up.returncode == 1
    assert "needy.1: blocked (secret key: file" in up.stdout
    assert "does not exist (create it or fix secrets.key.file)" in up.stdout
    assert "vaulted.1: blocked (secret vault: `sh -c 'echo locked >&2; exit 3'` exited 3: " \
           "locked" in up.stdout
    assert "Traceback" not in up.stdout + up.stderr
    rows = project.ps()
    assert rows["free.1"]["state"] == "running"
    assert rows["after.1"]["state"] == "waiting"
    (project.root / "key.txt").write_text("now-here\n")
    project.wait_for(lambda r: r["needy.1"]["state"] == "running"
                     and r["after.1"]["state"] == "running"
                     and [x["message"] for x in project.records("needy")] == ["***"],
                     timeout=40, what="the retry to find the file, and its value redacted")


@pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap (bwrap) is not installed")
def test_sandboxed_agents_read_their_secrets_at_run_secrets_only(project: Project,
                                                                   tmp_path: Path) -> None:
    (project.root / "a.txt").write_text("alpha-secret\n")
    (project.root / "b.txt").write_text("beta-secret\n")
    project.write("""
        name: boxedsecrets
        secrets:
          a: {file: ./a.txt}
          b: {file: ./b.txt}
        agents:
          boxed:
            class: compute
            isolation: sandbox
            command:
              - sh
              - -c
              - >-
                ls /run/secrets; echo dir=$$CORRAL_SECRETS_DIR; cat /run/secrets/a | wc -c;
                ls -A /dev/shm | wc -l; test -e /run/user && echo run-user || echo none
            secrets: [a]
          other:
            command: sleep 300
            secrets: [b]
    """)
    project.corral("up", "-d")
    rows = project.wait_for(lambda r: r["boxed.1"]["state"] == "exited", what="boxed")
    assert rows["boxed.1"]["exit_code"] == 0, project.records("boxed")
    said = [r["message"] for r in project.records("boxed")]
    assert said[:3] == ["a", "dir=/run/secrets", "12"], said
    assert said[3:] == ["0", "none"], "other agents' secret dirs are not visible"
    mode = stat.S_IMODE(Path(project.ps()["other.1"] and
                             _secret_file(project, "other.1", "b")).stat().st_mode)
    assert mode == 0o400


def _secret_file(project: Project, instance: str, name: str) -> str:
    from corral.runtime.keeper import SecretKeeper

    keeper = SecretKeeper(str(project.state_dir), "boxedsecrets", lambda *_: None)
    return str(Path(keeper.directory(instance)) / name)


def test_doctor_flags_committable_env_files_open_secret_files_and_admin_keys(
        project: Project) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", str(project.root)], check=True)
    (project.root / ".env").write_text("A=1\n")
    (project.root / ".env").chmod(0o644)
    (project.root / "key.txt").write_text("pw\n")
    (project.root / "key.txt").chmod(0o644)
    project.write("""
        name: doctored
        secrets:
          k: {file: ./key.txt}
        agents:
          a: {command: sleep 1, secrets: [k]}
    """)
    out = project.corral("doctor", check=False,
                         env={"AWS_ACCESS_KEY_ID": "AKIA0", "AWS_SECRET_ACCESS_KEY": "x"}).stdout
    flagged = [line for line in out.splitlines() if line.startswith("!! secrets")]
    assert any("AWS_SECRET_ACCESS_KEY is set" in f for f in flagged), out
    assert any(".env is not git-ignored" in f for f in flagged)
    assert any("secret k:" in f and "chmod 600" in f for f in flagged)
    (project.root / ".gitignore").write_text(".env\n")
    (project.root / ".env").chmod(0o600)
    (project.root / "key.txt").chmod(0o600)
    out = project.corral("doctor", check=False, env={"AWS_ACCESS_KEY_ID": "",
                                                     "AWS_SECRET_ACCESS_KEY": ""}).stdout
    assert [line for line in out.splitlines() if line.startswith("!! secrets")] == []
