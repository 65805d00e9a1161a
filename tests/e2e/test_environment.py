"""Clean environments through the real CLI and daemon: the daemon and every agent start from
the allow-list, whatever the shell of `corral up`/`run`/`exec` holds; inherit_env brings in
what it names; and a secret is redacted in every agent's records, in its derived forms,
including agents that never declared it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from corral.environ import NO_CLOUD
from corral.runtime.keeper import SecretKeeper
from tests.e2e.conftest import CORRAL, Project

SHELL = {
    "SA_PW": "sa-password-3141", "ACME_CONFIG": "/etc/acme", "HTTP_PROXY": "http://p:3128",
    "HTTPS_PROXY": "http://p:3129", "PYTHONPATH": "/nowhere", "SESSION_PIN": "pin-2718",
    "ACME_TOKEN": "acme-token-1618", "LC_TIME": "C.UTF-8",
}
ALLOWED = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR"}

PY = sys.executable  # not a pyenv shim: it would add its own variables
# one plain line (a line holding a JSON object would be merged into its record)
DUMP = "import json, os; print('env', json.dumps(dict(os.environ)), flush=True)"


def _allowed(name: str) -> bool:
    # PWD: the sh that joins the agent's cgroup before exec'ing it sets it (to the workdir);
    # NO_CLOUD: what keeps an agent without aws: from finding AWS credentials (checked below)
    return name in ALLOWED or name == "PWD" or name.startswith(("LC_", "XDG_", "CORRAL_")) \
        or name in NO_CLOUD


def _env_of(project: Project, agent: str) -> dict[str, str]:
    said = [r["message"] for r in project.records(agent)]
    return dict(json.loads(said[-1].removeprefix("env ")))


def test_the_daemon_and_agents_start_clean_and_inherit_only_what_is_named(
        project: Project) -> None:
    project.file("dump.py", DUMP)
    project.write(f"""
        name: cleanenv
        inherit_env: [LC_*]
        agents:
          plain:
            class: compute
            command: {PY} dump.py
          named:
            class: compute
            command: {PY} dump.py
            inherit_env: [ACME_*, "HTTP*_PROXY", SA_PW]
    """)
    project.corral("up", "-d", env=SHELL)
    project.wait_for(lambda r: all(x["state"] == "exited" for x in r.values()), what="agents")
    plain, named = _env_of(project, "plain"), _env_of(project, "named")
    assert all(_allowed(k) for k in plain), sorted(k for k in plain if not _allowed(k))
    assert {k: plain[k] for k in NO_CLOUD} == NO_CLOUD  # /dev/null files, no metadata service
    assert plain["LC_TIME"] == "C.UTF-8"  # the fleet's inherit_env
    assert plain["CORRAL_AGENT"] == "plain" and "PATH" in plain and "HOME" in plain
    assert named["ACME_CONFIG"] == "/etc/acme" and named["HTTPS_PROXY"] == "http://p:3129"
    assert named["HTTP_PROXY"] == "http://p:3128"
    assert named["SA_PW"] == "***"  # named exactly: given, and hidden in its records
    assert "ACME_TOKEN" not in named, "a glob never matches a credential-looking name"
    assert "PYTHONPATH" not in named and "SESSION_PIN" not in named
    pid = project.daemon_pid()
    assert pid is not None
    daemon = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text()
                  .split("\0") if "=" in item)
    leaked = set(daemon) & {"SA_PW", "ACME_CONFIG", "SESSION_PIN", "ACME_TOKEN"}
    assert not leaked, leaked
    # beyond the base: only corral's own settings and what its builds need (uv, npm, proxies,
    # CA bundles), none of which reaches an agent (see plain above)
    from corral.environ import DAEMON_AWS, DAEMON_ONLY, DAEMON_PREFIXES

    # (DAEMON_AWS: corral's own AWS identity, where the SDK finds it: no agent gets it)
    assert all(_allowed(k) or k in DAEMON_ONLY or k in DAEMON_AWS
               or k.startswith(DAEMON_PREFIXES) for k in daemon), sorted(
        k for k in daemon if not (_allowed(k) or k in DAEMON_ONLY or k in DAEMON_AWS
                                  or k.startswith(DAEMON_PREFIXES)))
    assert "HTTP_PROXY" not in plain and "HTTPS_PROXY" not in plain
    # the daemon log and the state store never hold the credential it was given
    for path in project.state_dir.rglob("*"):
        if path.is_file():
            assert b"sa-password-3141" not in path.read_bytes(), path


def test_corral_run_and_exec_give_the_same_clean_environment(project: Project) -> None:
    project.file("dump.py", DUMP)
    project.write(f"""
        name: runenv
        agents:
          tool:
            class: compute
            command: {PY} dump.py
            inherit_env: [ACME_CONFIG]
            env: {{FROM_MANIFEST: "yes"}}
    """)
    for how in (["run", "tool"], ["exec", "tool", "--", sys.executable, "dump.py"]):
        out = project.corral(*how, env={**SHELL, "TERM": "xterm-test"}).stdout
        env = json.loads(out.strip().splitlines()[-1].removeprefix("env "))
        assert env["ACME_CONFIG"] == "/etc/acme" and env["FROM_MANIFEST"] == "yes", how
        assert env["TERM"] == "xterm-test", how  # run and exec are attached to a terminal
        extra = sorted(k for k in env if not _allowed(k)
                       and k not in ("ACME_CONFIG", "FROM_MANIFEST", "TERM"))
        assert extra == [], (how, extra)
        assert {k: env[k] for k in NO_CLOUD} == NO_CLOUD, how


def test_corral_run_gives_the_agent_its_secrets(project: Project) -> None:
    (project.root / "k.txt").write_text("run-secret-5772\n")
    project.write("""
        name: runsecrets
        secrets:
          k: {file: ./k.txt}
          v: {environment: SA_PW}
        agents:
          tool:
            class: compute
            command: ["sh", "-c", "cat $$CORRAL_SECRETS_DIR/k; echo; echo pw=$$PW"]
            secrets: [k, {source: v, env: PW}]
    """)
    out = project.corral("run", "tool", env=SHELL).stdout
    assert out.split() == ["run-secret-5772", "pw=sa-password-3141"]
    execed = project.corral("exec", "tool", "--", "sh", "-c", 'cat "$CORRAL_SECRETS_DIR/k"',
                            env=SHELL).stdout
    assert execed.split() == ["run-secret-5772"]
    # the files written for the one-offs went with them: nothing of it stays on the tmpfs
    fleet = SecretKeeper(str(project.state_dir), "runsecrets", lambda *_: None).root
    assert not os.path.exists(fleet), os.listdir(fleet)
    left = subprocess.run(["grep", "-rl", "run-secret-5772", str(project.root / ".corral")],
                          capture_output=True, text=True).stdout.split()
    assert left == [], left
    missing = project.corral("run", "tool", check=False,
                             env={k: v for k, v in os.environ.items() if k != "SA_PW"})
    assert missing.returncode != 0
    assert "secret v: environment variable SA_PW is not set" in missing.stderr
    assert "Traceback" not in missing.stderr


LEAK = """\
import base64, binascii, json, sys, urllib.parse
value = open(sys.argv[1]).read().strip()
raw = value.encode()
print("raw", value)
print("b64", base64.b64encode(raw).decode())
print("b64url", base64.urlsafe_b64encode(raw).decode().rstrip("="))
print("basic", base64.b64encode(b"admin:" + raw).decode())
print("hex", binascii.hexlify(raw).decode(), binascii.hexlify(raw).decode().upper())
print("url", urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value))
print(json.dumps({"msg": "json " + value, "level": "warn"}))
print("err", value, base64.b64encode(raw).decode(), file=sys.stderr)
"""


def test_a_secret_is_redacted_in_every_agents_records_in_its_derived_forms(
        project: Project) -> None:
    secret = "n3ighb0ur/s3cret+v@lue"
    (project.root / "shared.txt").write_text(secret + "\n")
    project.file("leak.py", LEAK)
    project.write(f"""
        name: redactall
        secrets:
          shared: {{file: ./shared.txt}}
        agents:
          owner:
            command: sleep 300
            secrets: [shared]
          bystander:
            class: compute
            command: {PY} leak.py shared.txt
    """)
    project.corral("up", "-d")
    project.wait_for(lambda r: r["bystander.1"]["state"] == "exited", what="the bystander")
    records = project.records("bystander")
    said = [r["message"] for r in records]
    assert len(said) == 8, said
    raw = secret.encode()
    forms = [secret, base64.b64encode(raw).decode().rstrip("="), raw.hex(), raw.hex().upper(),
             quote(secret, safe=""), base64.b64encode(b"admin:" + raw).decode()[12:-4]]
    stored = (project.state_dir / "logs" / "bystander.log").read_text()
    for form in forms:
        assert form not in stored, form
    assert "raw ***" in said and "json ***" in said, said
    assert any(m.startswith("err *** ***") for m in said), said
    assert any(r["stream"] == "stderr" for r in records)
    assert next(r for r in records if r["message"] == "json ***")["level"] == "warn"


def test_sa_pw_like_variables_never_reach_an_exec_into_the_daemons_agents(
        project: Project) -> None:
    """`corral exec` builds its environment itself: even with a daemon up, the shell's
    credentials stay out."""
    project.write("""
        name: execenv
        agents:
          idle: {command: sleep 300}
    """)
    project.corral("up", "-d", env=SHELL)
    proc = subprocess.run([*CORRAL, "-f", str(project.manifest), "exec", "idle", "--", "env"],
                          cwd=project.root, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **SHELL}, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    names = {line.split("=", 1)[0] for line in proc.stdout.splitlines() if "=" in line}
    assert names.isdisjoint(SHELL.keys() - {"LC_TIME"}), names & SHELL.keys()
