"""The cloud blocks (``aws:``, ``cloud:``) as the CLI and the daemon read them, the policy
checks ``corral doctor`` makes, and the broker's cache and socket (``corral.cloud``): the
broker is driven with a provider of the test's (the provider seam itself), over a real unix
socket, asked by the real ``fetch.py`` in a real subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from corral.cloud import broker, peer
from corral.cloud.aws import policy
from corral.cloud.provider import AgentConfig, CloudError, Grant
from corral.errors import ManifestError
from corral.manifest import decode
from corral.manifest.loader import load_text

ROLE = "arn:aws:iam::123456789012:role/reader"
ALLOW_ALL = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def _fleet(agent: str, cloud: str = "cloud: {aws: {region: us-east-1}}") -> str:
    return f"name: t\n{cloud}\nagents:\n  a:\n    command: ['true']\n{agent}"


def _load(text: str, tmp_path: Path) -> Any:
    return load_text(text, project_dir=tmp_path, environ={})


def _problem(text: str, tmp_path: Path) -> str:
    with pytest.raises(ManifestError) as info:
        _load(text, tmp_path)
    return str(info.value)


def test_an_agents_aws_block_loads_with_its_shortcuts(tmp_path: Path) -> None:
    m = _load(_fleet(f"    aws: {{role: {ROLE}, duration: 2h, policy: {json.dumps(ALLOW_ALL)}}}\n"),
              tmp_path)
    access = m.agents["a"].aws
    assert access.role == ROLE and access.duration == 7200.0
    assert access.policy == ALLOW_ALL
    assert m.cloud.aws.region == "us-east-1"
    # the daemon decodes what the CLI sends, to the same records
    assert decode.manifest(decode.dump(m)) == m


@pytest.mark.parametrize(("agent", "cloud", "says"), [
    ("    aws: {role: reader}\n", None, "agents.a.aws.role: 'reader' is not an IAM role ARN"),
    (f"    aws: {{role: {ROLE}, duration: 5m}}\n", None, "agents.a.aws.duration: "),
    (f"    aws: {{role: {ROLE}, duration: 13h}}\n", None, "agents.a.aws.duration: "),
    (f"    aws: {{role: {ROLE}, policy: {{Version: x}}}}\n", None,
     "a session policy needs a Statement"),
    (f"    aws: {{role: {ROLE}, policy: {{Statement: [{{Action: '*'}}]}}}}\n", None,
     "Statement 0: needs Effect: Allow or Deny"),
    (f"    aws: {{role: {ROLE}}}\n", "", "agents.a.aws: needs the fleet's cloud.aws block"),
    (f"    aws: {{role: {ROLE}}}\n    isolation: container\n    container: {{image: x}}\n",
     None, "agents.a.aws: is for process, venv, sandbox agents on this host for now"),
    ("    aws: {role: " + ROLE + "}\n", "cloud: {aws: {endpoint_url: 'ftp://x'}}",
     "cloud.aws.endpoint_url"),
])
def test_bad_cloud_blocks_say_one_line_naming_the_key(tmp_path: Path, agent: str,
                                                       cloud: str | None, says: str) -> None:
    text = _fleet(agent) if cloud is None else _fleet(agent, cloud)
    problem = _problem(text, tmp_path)
    assert says in problem, problem


def test_the_daemon_refuses_what_the_cli_would(tmp_path: Path) -> None:
    good = decode.dump(_load(_fleet(f"    aws: {{role: {ROLE}}}\n"), tmp_path))
    no_cloud = {**good, "cloud": {"aws": None}}
    with pytest.raises(ManifestError, match=r"agents\.a\.aws: needs the fleet's cloud\.aws"):
        decode.manifest(no_cloud)
    big = dict(good)
    big["agents"] = {"a": {**good["agents"]["a"], "aws": {
        "role": ROLE, "duration": 900.0, "session_name": None,
        "policy": {"Statement": [{"Effect": "Allow", "Action": "s3:" + "x" * 3000}]}}}}
    with pytest.raises(ManifestError, match=r"agents\.a\.aws\.policy: the session policy is"):
        decode.manifest(big)
    short = dict(good)
    short["agents"] = {"a": {**good["agents"]["a"], "aws": {
        "role": ROLE, "duration": 60.0, "session_name": None, "policy": None}}}
    with pytest.raises(ManifestError, match=r"agents\.a\.aws\.duration"):
        decode.manifest(short)


def test_an_agent_without_aws_keeps_its_spec_hash(tmp_path: Path) -> None:
    m = _load(_fleet(""), tmp_path)
    assert b'"aws"' not in decode.canonical(m.agents["a"])
    with_aws = _load(_fleet(f"    aws: {{role: {ROLE}}}\n"), tmp_path)
    assert b'"aws"' in decode.canonical(with_aws.agents["a"])


def test_policy_checks_flag_star_on_star_no_policy_and_admin_roles(tmp_path: Path) -> None:
    assert policy.grants_everything(ALLOW_ALL)
    assert policy.grants_everything({"Statement": {"Effect": "Allow", "Action": ["*:*"],
                                                   "Resource": ["*"]}})
    assert policy.grants_everything({"Statement": [{"Effect": "Allow", "NotAction": "iam:*",
                                                    "Resource": "*"}]})
    assert not policy.grants_everything({"Statement": [{"Effect": "Deny", "Action": "*",
                                                        "Resource": "*"}]})
    assert not policy.grants_everything({"Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b/*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})
    text = (f"name: t\ncloud: {{aws: {{region: r, role_arn: "
            f"'arn:aws:iam::123456789012:role/FleetAdmin'}}}}\nagents:\n"
            f"  boss: {{command: ['true'], aws: {{role: {ROLE}, "
            f"policy: {json.dumps(ALLOW_ALL)}}}}}\n"
            f"  open: {{command: ['true'], aws: {{role: "
            f"'arn:aws:iam::123456789012:role/AdministratorAccess'}}}}\n"
            f"  fine: {{command: ['true'], aws: {{role: {ROLE}, policy: {{Statement: "
            f"[{{Effect: Allow, Action: 's3:GetObject', Resource: '*'}}]}}}}}}\n"
            f"  none: {{command: ['true']}}\n")
    said = policy.warnings(_load(text, tmp_path))
    assert said == [
        "cloud.aws.role_arn arn:aws:iam::123456789012:role/FleetAdmin looks like an "
        "administrator role: corral needs only sts:AssumeRole on the agents' roles",
        "agents.boss.aws.policy allows * on * (administrator): name the actions and "
        "resources it needs",
        "agents.open.aws has no policy: it gets every permission of "
        "arn:aws:iam::123456789012:role/AdministratorAccess; add a session policy naming "
        "what it needs",
        "agents.open.aws.role arn:aws:iam::123456789012:role/AdministratorAccess looks like "
        "an administrator role: give the agent a role of its own",
    ]


def test_a_process_is_within_its_own_tree_only() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; "
                              "subprocess.run(['sleep', '30'])"])
    grandchild = None
    try:
        for _ in range(100):
            kids = Path(f"/proc/{child.pid}/task/{child.pid}/children").read_text().split()
            if kids:
                break
            time.sleep(0.05)
        grandchild = int(kids[0])
        assert peer.within(grandchild, child.pid)
        assert peer.within(child.pid, child.pid)
        assert not peer.within(os.getpid(), child.pid)
        assert not peer.within(child.pid, grandchild)
    finally:
        if grandchild is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(grandchild, signal.SIGKILL)
        child.kill()
        child.wait()


class _Provider:
    """The provider seam, answered by the test: numbered grants, each 900 s long."""

    name = "fake"

    def __init__(self, now: list[float], fail: list[str]) -> None:
        self.now = now
        self.fail = fail
        self.made = 0

    def grant(self, agent: str, instance: str, access: Any) -> Grant:
        if self.fail:
            raise CloudError(self.fail[0])
        self.made += 1
        secret = f"secret-{self.made}"
        return Grant({"Version": 1, "AccessKeyId": f"key-{self.made}",
                      "SecretAccessKey": secret, "SessionToken": f"token-{self.made}",
                      "Expiration": "2030-01-01T00:00:00Z"},
                     self.now[0] + 900, (secret, f"token-{self.made}"))

    def agent_config(self, access: Any, fetch: list[str], inside: str) -> AgentConfig:
        return AgentConfig({"conf": " ".join(fetch)}, {"X": inside}, ("DROP",))

    def refresh_before(self, access: Any) -> float:
        return 300.0

    def transfer(self, op: str, grant: Grant, where: str, **fields: Any) -> dict[str, Any]:
        raise AssertionError("no transfer in this test")


def _fetch(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(broker.fetch_argv(str(directory)), capture_output=True, text=True,
                          timeout=30)


def test_the_broker_caches_refreshes_and_answers_only_its_instances_tree(
        tmp_path: Path) -> None:
    now = [1000.0]
    fail: list[str] = []
    redacted: list[str] = []
    provider = _Provider(now, fail)
    allowed: dict[str, int | None] = {"pid": None}

    async def scenario() -> None:
        b = broker.CredentialBroker(None, "t", redact=redacted.extend,
                                    pid_of=lambda instance: allowed["pid"],
                                    now=lambda: now[0])
        b._providers["fake"] = provider
        config = await b.equip("a", "a.1", "fake", None, inside=str(tmp_path))
        assert config.env == {"X": str(tmp_path)} and config.drop == ("DROP",)
        (tmp_path / broker.FETCH).write_text(config.files[broker.FETCH])
        assert config.files["conf"].endswith(f"{broker.FETCH} {tmp_path}/{broker.SOCKET}")
        await b.serve("a", "a.1", "fake", None, directory=str(tmp_path), uid=os.geteuid(),
                      gid=os.getegid())
        assert oct((tmp_path / broker.SOCKET).stat().st_mode & 0o777) == "0o600"

        async def ask() -> subprocess.CompletedProcess[str]:
            return await asyncio.to_thread(_fetch, tmp_path)

        refused = await ask()  # not the instance's process tree (it is not running)
        assert refused.returncode == 1 and "not running" in refused.stderr
        allowed["pid"] = os.getpid()  # the fetch runs as a child of this test: in the tree
        first = await ask()
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["AccessKeyId"] == "key-1"
        now[0] += 500  # 400 s left: more than refresh_before, the same grant
        assert json.loads((await ask()).stdout)["AccessKeyId"] == "key-1"
        now[0] += 150  # 250 s left: replaced
        assert json.loads((await ask()).stdout)["AccessKeyId"] == "key-2"
        assert provider.made == 2 and b.granted == 2
        assert redacted == ["secret-1", "token-1", "secret-2", "token-2"]
        allowed["pid"] = 1  # another tree (init's children are not this test)
        other = await ask()
        assert other.returncode == 1 and "not one of this instance's" in other.stderr
        allowed["pid"] = os.getpid()
        now[0] += 900
        fail.append("agents.a.fake: AssumeRole of r failed: AccessDenied (fix it)")
        denied = await ask()
        assert denied.returncode == 1
        assert denied.stderr.strip() == ("corral: agents.a.fake: AssumeRole of r failed: "
                                         "AccessDenied (fix it)")
        await b.close()
        assert not (tmp_path / broker.SOCKET).exists()
        gone = await ask()
        assert gone.returncode == 1 and "cannot reach the daemon" in gone.stderr

    asyncio.run(scenario())


def test_a_grant_never_shows_its_values() -> None:
    grant = Grant({"SecretAccessKey": "s3cr3t"}, 5.0, ("s3cr3t",))
    assert "s3cr3t" not in repr(grant) and "s3cr3t" not in str(grant)


def test_artifact_globs() -> None:
    from corral.cloud.aws.s3 import glob_regex

    assert glob_regex("out/**").fullmatch("out/a/b.txt")
    assert glob_regex("out/**").fullmatch("out/a.txt")
    assert not glob_regex("out/*").fullmatch("out/a/b.txt")
    assert glob_regex("**/*.csv").fullmatch("x.csv")
    assert glob_regex("**/*.csv").fullmatch("a/b/x.csv")
    assert not glob_regex("*.csv").fullmatch("a/x.csv")
    assert glob_regex("f?.bin").fullmatch("f1.bin")
    assert not glob_regex("f?.bin").fullmatch("f12.bin")
