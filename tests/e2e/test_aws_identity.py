"""Agents' AWS identities through the real CLI and daemon, against a real ``moto_server`` on
127.0.0.1 with IAM enforced (``tests/support/moto.py``): corral's own identity is an IAM user
allowed nothing but ``sts:AssumeRole``, so whatever an agent can do in S3 it does with the
temporary credentials of its role, fetched by boto3 itself through the ``credential_process``
of the AWS config corral gave it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from corral.api.client import Client
from corral.drivers.host.bwrap import find_bwrap
from tests.e2e.conftest import Project
from tests.support.moto import DATA, FLEET, LOCKED, OTHER, READER, Account

pytestmark = pytest.mark.e2e
PY = sys.executable  # has boto3 (the test extra); agents start with a clean environment

# what an agent does with AWS: the standard chain of boto3, nothing given to it by hand
CALLER = """\
import json, os, sys
import boto3, botocore.exceptions as e
what = sys.argv[1]
try:
    if what == "read":
        body = boto3.client("s3").get_object(Bucket="@DATA@", Key="hello.txt")["Body"]
        print("read", body.read().decode(), flush=True)
        ident = boto3.client("sts").get_caller_identity()["Arn"]
        print("arn", ident, flush=True)
    elif what == "write-other":
        boto3.client("s3").put_object(Bucket="@OTHER@", Key="x", Body=b"x")
        print("wrote other", flush=True)
    elif what == "write-data":
        boto3.client("s3").put_object(Bucket="@DATA@", Key=sys.argv[2], Body=b"ok")
        print("wrote data", flush=True)
except e.NoCredentialsError:
    print("no credentials", flush=True)
except e.ClientError as exc:
    print("denied", exc.response["Error"]["Code"], flush=True)
print("config", os.environ.get("AWS_CONFIG_FILE"), flush=True)
print("keys in env", sorted(k for k in os.environ if k in (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")),
    flush=True)
""".replace("@DATA@", DATA).replace("@OTHER@", OTHER)


def _setup(project: Project, account: Account) -> dict[str, str]:
    project.file("caller.py", CALLER)
    return account.env(project.root)


def _messages(project: Project, agent: str) -> list[str]:
    return [r["message"] for r in project.records(agent)]


def _exited(project: Project, *names: str) -> dict[str, dict[str, Any]]:
    return project.wait_for(lambda r: all(r.get(n, {}).get("state") == "exited"
                                          for n in names), what=f"{names} to exit")


def test_an_agent_reads_s3_with_its_role_and_no_keys_of_its_own(
        project: Project, aws_account: Account) -> None:
    env = _setup(project, aws_account)
    project.write(f"""
        name: awsread
        cloud: {aws_account.cloud_block()}
        agents:
          reader:
            class: compute
            command: [{PY}, caller.py, read]
            aws:
              role: {READER}
              duration: 15m
              policy:
                Version: "2012-10-17"
                Statement:
                  - {{Effect: Allow, Action: ["s3:GetObject"], Resource: "*"}}
    """)
    project.corral("up", "-d", env=env)
    rows = _exited(project, "reader.1")
    said = _messages(project, "reader")
    assert rows["reader.1"]["exit_code"] == 0, said
    assert "read hello from s3" in said, said
    assert f"arn arn:aws:sts::{READER.split(':')[4]}:assumed-role/reader/corral-awsread-reader.1" \
        in said, said
    assert "keys in env []" in said, said


def test_an_agent_without_aws_finds_no_credentials_even_in_its_home(
        project: Project, aws_account: Account, tmp_path: Path) -> None:
    """corral's user keeps real keys in ~/.aws (the agent's HOME is that user's); the
    corral command's environment holds AWS_* variables and the agent inherits AWS_* by glob:
    none of it reaches the agent."""
    env = _setup(project, aws_account)
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(
        f"[default]\naws_access_key_id = {aws_account.access_key}\n"
        f"aws_secret_access_key = {aws_account.secret_key}\n")
    env.update({"HOME": str(home), "AWS_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": aws_account.endpoint})
    project.write(f"""
        name: awsnone
        cloud: {aws_account.cloud_block()}
        agents:
          plain:
            class: compute
            command: [{PY}, caller.py, read]
            inherit_env: ["AWS_*"]
            env: {{AWS_ENDPOINT_URL: "{aws_account.endpoint}", AWS_DEFAULT_REGION: us-east-1}}
    """)
    project.corral("up", "-d", env=env)
    _exited(project, "plain.1")
    said = _messages(project, "plain")
    assert "no credentials" in said, said
    assert not any(m.startswith("read ") for m in said), said


def test_a_scoped_agent_is_denied_what_its_role_and_policy_do_not_grant(
        project: Project, aws_account: Account) -> None:
    """moto enforces the role's own policy (S3 on the data bucket only) on the assumed
    credentials; it does not evaluate session policies, so what corral sent to STS as the
    session policy is read back from moto's state."""
    env = _setup(project, aws_account)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": f"arn:aws:s3:::{DATA}/*"}]}
    project.write(f"""
        name: awsscoped
        cloud: {aws_account.cloud_block()}
        agents:
          other:
            class: compute
            command: [{PY}, caller.py, write-other]
            aws: {{role: {READER}, policy: {json.dumps(policy)}}}
          data:
            class: compute
            command: [{PY}, caller.py, write-data, scoped.txt]
            aws: {{role: {READER}, policy: {json.dumps(policy)}}}
    """)
    project.corral("up", "-d", env=env)
    _exited(project, "other.1", "data.1")
    assert "denied AccessDenied" in _messages(project, "other"), _messages(project, "other")
    assert "wrote data" in _messages(project, "data"), _messages(project, "data")
    roles = _assumed(aws_account.state()["sts"])
    mine = [r for r in roles if r.get("session_name") == "corral-awsscoped-other.1"]
    assert mine and json.loads(mine[-1]["policy"]) == policy, mine


def _assumed(found: Any) -> list[dict[str, Any]]:
    """moto's dump of its STS backends: the assumed roles, however deep they sit."""
    out: list[dict[str, Any]] = []
    if isinstance(found, dict):
        if "session_name" in found and "role_arn" in found:
            return [found]
        for value in found.values():
            out += _assumed(value)
    elif isinstance(found, list):
        for value in found:
            out += _assumed(value)
    return out


REFRESHER = """\
import time, boto3
session = boto3.session.Session()
s3 = session.client("s3")
seen = []
for i in range(14):
    s3.list_objects_v2(Bucket="@DATA@")  # the SDK refreshes by itself as it needs
    key = s3._request_signer._credentials.get_frozen_credentials().access_key
    if not seen or seen[-1] != key:
        seen.append(key)
    time.sleep(1)
print("distinct", len(seen), flush=True)
print("ok", flush=True)
""".replace("@DATA@", DATA)


def test_credentials_are_replaced_before_they_expire_and_the_sdk_follows(
        project: Project, aws_account: Account) -> None:
    """STS's shortest duration (15 min) with refresh_before 895 s: each grant is replaced
    5 s after it was made. One boto3 client in the agent keeps working across the
    replacements and signs with each new key in turn (botocore calls the credential_process
    again as the Expiration nears)."""
    env = _setup(project, aws_account)
    project.file("refresh.py", REFRESHER)
    project.write(f"""
        name: awsrefresh
        cloud: {aws_account.cloud_block(refresh_before=895)}
        agents:
          busy:
            class: compute
            command: [{PY}, refresh.py]
            aws: {{role: {READER}, duration: 900}}
    """)
    project.corral("up", "-d", env=env)
    rows = project.wait_for(lambda r: r.get("busy.1", {}).get("state") == "exited",
                            timeout=60, what="the refreshing agent")
    said = _messages(project, "busy")
    assert rows["busy.1"]["exit_code"] == 0, said
    assert "ok" in said, said
    distinct = [int(m.split()[1]) for m in said if m.startswith("distinct ")]
    assert distinct and distinct[0] >= 2, said


LEAKER = """\
import json, boto3
c = boto3.session.Session().get_credentials().get_frozen_credentials()
open("creds.json", "w").write(json.dumps([c.access_key, c.secret_key, c.token]))
print("secret", c.secret_key, "token", c.token, flush=True)
import time; time.sleep(300)
"""


def test_credentials_reach_no_log_state_event_nor_config(
        project: Project, aws_account: Account) -> None:
    env = _setup(project, aws_account)
    project.file("leak.py", LEAKER)
    project.write(f"""
        name: awsleak
        cloud: {aws_account.cloud_block()}
        agents:
          leaky:
            command: [{PY}, leak.py]
            aws: {{role: {READER}}}
    """)
    client_seen: list[dict[str, Any]] = []
    up = project.corral("up", "-d", env=env)
    client = Client(str(project.state_dir / "corral.sock"))
    stop = threading.Event()

    def follow() -> None:
        for event in client.events(logs=True):
            client_seen.append(event)
            if stop.is_set():
                return

    threading.Thread(target=follow, daemon=True).start()
    creds_file = project.root / "creds.json"
    deadline = time.monotonic() + 30
    while not creds_file.exists() or not creds_file.read_text():
        assert time.monotonic() < deadline, project.records("leaky")
        time.sleep(0.1)
    _key, secret, token = json.loads(creds_file.read_text())
    project.wait_for(lambda r: any(m.startswith("secret ") for m in _messages(project, "leaky")),
                     what="the agent's print")
    assert "secret *** token ***" in _messages(project, "leaky"), _messages(project, "leaky")
    project.corral("restart", "leaky", env=env)  # events: stop, start, a log line again
    project.wait_for(lambda r: r["leaky.1"]["restarts"] >= 1, what="the restart")
    stop.set()
    for path in project.state_dir.rglob("*"):
        if path.is_file() and not path.is_socket():
            data = path.read_bytes()
            assert secret.encode() not in data and token.encode() not in data, path
    config = project.corral("config", env=env).stdout
    everything = [up.stdout, up.stderr, config, json.dumps(client_seen),
                  json.dumps(client.status()), json.dumps(client.exec_spec("leaky")),
                  json.dumps(client.logs())]
    for text in everything:
        assert secret not in text and token not in text


def test_another_process_of_the_same_user_cannot_fetch_an_agents_credentials(
        project: Project, aws_account: Account) -> None:
    """An agent without aws: that knows where the other's socket is (a neighbour of the same
    uid can read its config), and this test itself: both refused."""
    env = _setup(project, aws_account)
    project.file("thief.py", """\
        import os, subprocess, sys, time
        config = sys.argv[1]
        while not os.path.exists(config):
            time.sleep(0.1)
        line = [l for l in open(config) if l.startswith("credential_process")][0]
        argv = line.split("=", 1)[1].split()
        out = subprocess.run(argv, capture_output=True, text=True)
        print("thief", out.returncode, out.stdout[:20], out.stderr.strip(), flush=True)
    """)
    project.write(f"""
        name: awssteal
        cloud: {aws_account.cloud_block()}
        agents:
          owner:
            command: ["sleep", "300"]
            aws: {{role: {READER}}}
    """)
    project.corral("up", "-d", env=env)
    rows = project.wait_for(lambda r: r.get("owner.1", {}).get("state") == "running",
                            what="owner")
    environ = Path(f"/proc/{rows['owner.1']['pid']}/environ").read_bytes().split(b"\0")
    config = next(v.split(b"=", 1)[1].decode() for v in environ
                  if v.startswith(b"AWS_CONFIG_FILE="))
    sock = os.path.join(os.path.dirname(config), "cloud.sock")
    # this test's own process: same uid, not in the instance's tree
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock)
        reply = json.loads(s.makefile("rb").read())
    assert "error" in reply and "not one of this instance's" in reply["error"], reply
    project.write(f"""
        name: awssteal
        cloud: {aws_account.cloud_block()}
        agents:
          owner:
            command: ["sleep", "300"]
            aws: {{role: {READER}}}
          thief:
            class: compute
            command: [{PY}, thief.py, {config}]
    """)
    project.corral("up", "-d", env=env)
    _exited(project, "thief.1")
    said = [m for m in _messages(project, "thief") if m.startswith("thief ")]
    assert said and said[0].startswith("thief 1  corral: owner.1's credentials are for its "
                                       "own processes"), said


def test_bad_input_says_one_line(project: Project, aws_account: Account) -> None:
    env = _setup(project, aws_account)
    project.write(f"""
        name: awsbad
        cloud: {aws_account.cloud_block()}
        agents:
          a: {{command: ["true"], aws: {{role: reader}}}}
    """)
    bad = project.corral("up", "-d", env=env, check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "agents.a.aws.role: 'reader' is not an IAM role ARN" in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    project.write("""
        name: awsbad
        agents:
          a: {command: ["true"], aws: {role: "arn:aws:iam::123456789012:role/reader"}}
    """)
    bad = project.corral("up", "-d", env=env, check=False)
    assert bad.returncode != 0 and "agents.a.aws: needs the fleet's cloud.aws" in bad.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    project.write(f"""
        name: awsbad
        cloud: {{aws: {{region: us-east-1, profile: corral, endpoint_url: "{closed}"}}}}
        agents:
          denied: {{command: ["sleep", "60"], aws: {{role: {LOCKED}}}}}
    """)
    up = project.corral("up", "-d", env=env, check=False)
    assert up.returncode != 0 and "Traceback" not in up.stderr + up.stdout
    assert f"denied.1: blocked (agents.denied.aws: cannot reach {closed}" in up.stdout, up
    rows = project.wait_for(lambda r: r.get("denied.1", {}).get("state") == "blocked",
                            what="the unreachable endpoint")
    assert rows["denied.1"]["reason"].startswith(
        f"agents.denied.aws: cannot reach {closed}"), rows["denied.1"]["reason"]
    project.write(f"""
        name: awsbad
        cloud: {aws_account.cloud_block()}
        agents:
          denied: {{command: ["sleep", "60"], aws: {{role: {LOCKED}}}}}
    """)
    project.corral("up", "-d", env=env, check=False)
    rows = project.wait_for(lambda r: "AccessDenied" in (r.get("denied.1", {})
                                                         .get("reason") or ""),
                            what="the denied AssumeRole")
    reason = rows["denied.1"]["reason"]
    assert rows["denied.1"]["state"] == "blocked"
    assert reason.startswith(f"agents.denied.aws: AssumeRole of {LOCKED} failed: "
                             "AccessDenied"), reason
    assert "\n" not in reason


def test_doctor_and_up_flag_admin_policies_and_long_lived_keys(
        project: Project, aws_account: Account) -> None:
    env = _setup(project, aws_account)
    project.write(f"""
        name: awsadmin
        cloud: {aws_account.cloud_block()}
        agents:
          boss:
            command: ["sleep", "60"]
            aws:
              role: {READER}
              policy: {{Version: "2012-10-17", Statement: [{{Effect: Allow, Action: "*",
                        Resource: "*"}}]}}
          open:
            command: ["sleep", "60"]
            aws: {{role: {READER}}}
    """)
    up = project.corral("up", "-d", env=env)
    assert "agents.boss.aws.policy allows * on * (administrator)" in up.stderr, up.stderr
    assert "agents.open.aws has no policy" in up.stderr, up.stderr
    assert "holds a long-lived access key (AKIA...)" in up.stderr, up.stderr
    doctor = project.corral("doctor", env=env, check=False)
    assert "agents.boss.aws.policy allows * on *" in doctor.stdout, doctor.stdout
    assert "holds a long-lived access key" in doctor.stdout, doctor.stdout
    assert aws_account.secret_key not in doctor.stdout + up.stderr


@pytest.mark.skipif(find_bwrap() is None, reason="bwrap not installed (apt-get install "
                    "bubblewrap; scripts/install.sh --test installs it)")
def test_a_sandboxed_agent_gets_its_credentials_inside(
        project: Project, aws_account: Account) -> None:
    env = _setup(project, aws_account)
    project.write(f"""
        name: awsbox
        cloud: {aws_account.cloud_block()}
        agents:
          boxed:
            class: compute
            isolation: sandbox
            network: host
            command: [{PY}, caller.py, read]
            aws: {{role: {READER}}}
    """)
    project.corral("up", "-d", env=env)
    rows = _exited(project, "boxed.1")
    said = _messages(project, "boxed")
    assert rows["boxed.1"]["exit_code"] == 0, said
    assert "read hello from s3" in said, said
    assert "config /run/secrets/aws-config" in said, said


def test_a_restarted_daemon_serves_a_running_agents_credentials_again(
        project: Project, aws_account: Account) -> None:
    env = _setup(project, aws_account)
    project.file("again.py", """\
        import os, time, boto3
        while not os.path.exists("go"):
            time.sleep(0.2)
        s = boto3.session.Session()
        print("again", s.client("s3").get_object(Bucket="@DATA@", Key="hello.txt")["Body"]
              .read().decode(), flush=True)
        time.sleep(300)
    """.replace("@DATA@", DATA))
    project.write(f"""
        name: awsagain
        cloud: {aws_account.cloud_block()}
        agents:
          patient:
            command: [{PY}, again.py]
            aws: {{role: {READER}}}
    """)
    project.corral("up", "-d", env=env)
    rows = project.wait_for(lambda r: r.get("patient.1", {}).get("state") == "running",
                            what="patient")
    pid = project.daemon_pid()
    assert pid is not None
    os.kill(pid, 9)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    project.corral("up", "-d", env=env)  # a new daemon: it re-adopts the agent
    assert project.ps()["patient.1"]["pid"] == rows["patient.1"]["pid"]
    (project.root / "go").write_text("")
    project.wait_for(lambda r: "again hello from s3" in _messages(project, "patient"),
                     what="the read after the daemon's restart")


def test_the_credential_process_alone_says_one_line_when_the_fleet_is_down(
        tmp_path: Path) -> None:
    from corral.cloud import broker

    fetch = tmp_path / broker.FETCH
    fetch.write_text(broker.fetch_source())
    out = subprocess.run([*broker.fetch_argv(str(tmp_path))], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("corral: cannot reach the daemon for this agent's "
                                 "credentials at "), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


# run as the agent's own user by the system's interpreter, as any SDK would: the
# credential_process line of its AWS config, or the one of another agent's
ASK = """\
import os, shlex, subprocess, sys
path = sys.argv[1] if len(sys.argv) > 1 else os.environ["AWS_CONFIG_FILE"]
try:
    line = [l for l in open(path) if l.startswith("credential_process")][0]
except OSError as exc:
    print("config", type(exc).__name__, flush=True)
    line = "credential_process = " + sys.argv[2]
out = subprocess.run(shlex.split(line.split("=", 1)[1]), capture_output=True, text=True)
print("asked", out.returncode, out.stdout[:24], out.stderr.strip()[-60:], flush=True)
"""


@pytest.fixture
def open_project() -> Any:
    """A project in a dir other users may enter (the agents' workdir)."""
    import shutil

    from tests.e2e.conftest import tear_down
    from tests.support.agentusers import open_dir

    root = open_dir("corral-aws-")
    p = Project(root)
    try:
        yield p
    finally:
        tear_down(p, root)
        shutil.rmtree(root, ignore_errors=True)


def test_agents_with_users_of_their_own_reach_only_their_own_credentials(
        open_project: Project, aws_account: Account, agent_users: tuple[Any, ...]) -> None:
    """An agent with user: gets its private dir and socket as its own uid (corral runs as
    root); another user cannot even open the first one's config, nor connect."""
    a, b = agent_users
    project = open_project
    env = aws_account.env(project.root)
    for name in env.values():
        os.chmod(name, 0o600)  # corral's (root's) own credentials: no agent reads them
    project.file("ask.py", ASK)
    project.write(f"""
        name: awsusers
        cloud: {aws_account.cloud_block()}
        agents:
          owner:
            user: {a.pw_name}
            command: ["sh", "-c", "/usr/bin/python3 ask.py; exec sleep 300"]
            aws: {{role: {READER}}}
    """)
    project.corral("up", "-d", env=env)
    rows = project.wait_for(lambda r: any(m.startswith("asked ")
                                          for m in _messages(project, "owner")),
                            what="the owner's own ask")
    said = [m for m in _messages(project, "owner") if m.startswith("asked ")]
    assert said[0].startswith('asked 0 {"Version": 1, "Access'), said
    environ = Path(f"/proc/{rows['owner.1']['pid']}/environ").read_bytes().split(b"\0")
    config = next(v.split(b"=", 1)[1].decode() for v in environ
                  if v.startswith(b"AWS_CONFIG_FILE="))
    assert os.stat(config).st_uid == a.pw_uid
    sock = os.path.join(os.path.dirname(config), "cloud.sock")
    assert os.stat(sock).st_uid == a.pw_uid
    fetch = os.path.join(os.path.dirname(config), "cloud-credentials.py")
    project.write(f"""
        name: awsusers
        cloud: {aws_account.cloud_block()}
        agents:
          owner:
            user: {a.pw_name}
            command: ["sh", "-c", "/usr/bin/python3 ask.py; exec sleep 300"]
            aws: {{role: {READER}}}
          thief:
            user: {b.pw_name}
            class: compute
            command: ["/usr/bin/python3", "ask.py", "{config}",
                      "/usr/bin/python3 -I -S {fetch} {sock}"]
    """)
    project.corral("up", "-d", env=env)
    _exited(project, "thief.1")
    said = _messages(project, "thief")
    assert "config PermissionError" in said, said
    asked = [m for m in said if m.startswith("asked ")]
    # its own interpreter cannot even open the other's copy of fetch.py (nor the socket)
    assert asked and asked[0].startswith("asked 2 ") and "Permission denied" in asked[0], asked


def test_corral_may_assume_a_role_of_its_own_first(
        project: Project, aws_account: Account) -> None:
    """cloud.aws.role_arn: corral's user assumes the fleet's role, and that role the agent's;
    the agent's session is opened by the fleet's role, not by the user."""
    env = _setup(project, aws_account)
    project.write(f"""
        name: awsbase
        cloud: {aws_account.cloud_block(role_arn=FLEET)}
        agents:
          reader:
            class: compute
            command: [{PY}, caller.py, read]
            aws: {{role: {READER}}}
    """)
    project.corral("up", "-d", env=env)
    rows = _exited(project, "reader.1")
    said = _messages(project, "reader")
    assert rows["reader.1"]["exit_code"] == 0, said
    assert "read hello from s3" in said, said
    sessions = {(r["role_arn"], r["session_name"]) for r in _assumed(aws_account.state()["sts"])}
    assert (FLEET, "corral-awsbase-corral") in sessions, sessions
    assert (READER, "corral-awsbase-reader.1") in sessions, sessions
