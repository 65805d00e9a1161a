"""A real AWS-compatible endpoint on 127.0.0.1 for the aws tests: ``moto_server`` (PyPI's
``moto[server]``, installed by ``scripts/install.sh --test``), on a free port, with IAM
enforced (``INITIAL_NO_AUTH_ACTION_COUNT``): the first ``SETUP_CALLS`` requests make the
account (``Account``) unauthenticated, and every request after them is checked against IAM:
an unknown key is refused, a key whose policies do not allow the action is AccessDenied.
Stopped by its PID at the end of the session.

moto 5.2 recomputes an S3 request's signature from its URL as werkzeug rebuilds it, with
``%2F`` decoded: a listing whose ``Prefix`` holds a ``/`` (every prefix corral lists) fails
with SignatureDoesNotMatch, though the request is signed right. The server runs with one
fix (``_RAW_QUERY``): the URL moto checks keeps the query exactly as the client sent it
(``QUERY_STRING``). And its state dump (``/moto-api/data.json``, read by the session policy
test) skips a value whose property raises, as it skips one that is not JSON: a multipart
upload's part, once it exists, otherwise made every dump a 500 (its ``status`` looks up a
bucket it has not). Nothing else of moto is changed.

moto enforces the role's own policies on assumed-role credentials, not the session policy
(``moto.iam.access_control.AssumedRoleAccessKey.collect_policies``): a test of the session
policy reads what reached STS from moto's own state (``assumed_roles``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ACCOUNT = "123456789012"  # moto's
REGION = "us-east-1"
DATA, OTHER = "corral-data", "corral-other"
READER = f"arn:aws:iam::{ACCOUNT}:role/reader"  # s3 on DATA only; corral may assume it
LOCKED = f"arn:aws:iam::{ACCOUNT}:role/locked"  # trusts someone else: corral may not
# corral's own role (cloud.aws.role_arn): corral's user may assume it, and it may assume
# READER; moto matches a trusted principal exactly, so READER trusts the session corral's
# project "awsbase" opens in it (provider: corral-PROJECT-corral)
FLEET = f"arn:aws:iam::{ACCOUNT}:role/fleet"
FLEET_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/fleet/corral-awsbase-corral"
# events to the cloud: the fleet's queue (corral sends to it), an agent's queue (it publishes
# there), another queue (its session policy does not name it), a topic; PUBLISHER may
# send only, CONSUMER receive only
EVENTS, JOBS, ELSEWHERE, TOPIC = "corral-events", "corral-jobs", "corral-elsewhere", "corral-topic"
PUBLISHER = f"arn:aws:iam::{ACCOUNT}:role/publisher"
CONSUMER = f"arn:aws:iam::{ACCOUNT}:role/consumer"
# may deploy and invoke functions (the lambda driver's deployments; it is also their
# execution role)
DEPLOYER = f"arn:aws:iam::{ACCOUNT}:role/deployer"
SETUP_CALLS = 23  # the requests ``_make_account`` sends before IAM is enforced


@dataclass(frozen=True)
class Account:
    endpoint: str
    access_key: str  # corral's own identity: an IAM user allowed sts:AssumeRole only
    secret_key: str

    def env(self, root: Path) -> dict[str, str]:
        """The environment of the corral commands (and so of the daemon they start): an AWS
        config of their own, with corral's profile."""
        creds = root / "aws-credentials"
        creds.write_text(f"[corral]\naws_access_key_id = {self.access_key}\n"
                         f"aws_secret_access_key = {self.secret_key}\n")
        config = root / "aws-config"
        config.write_text("")
        return {"AWS_SHARED_CREDENTIALS_FILE": str(creds), "AWS_CONFIG_FILE": str(config)}

    def cloud_block(self, **extra: Any) -> str:
        block = {"region": REGION, "profile": "corral", "endpoint_url": self.endpoint, **extra}
        return json.dumps({"aws": block})

    def state(self) -> dict[str, Any]:
        """moto's own state of every backend (its /moto-api/data.json)."""
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=10) as r:
            found: dict[str, Any] = json.load(r)
        return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(service: str, endpoint: str, key: str = "setup", secret: str = "setup") -> Any:
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=key, aws_secret_access_key=secret)


def _make_account(endpoint: str) -> Account:
    iam = _client("iam", endpoint)
    iam.create_user(UserName="corral")  # 1
    key = iam.create_access_key(UserName="corral")["AccessKey"]  # 2
    iam.put_user_policy(UserName="corral", PolicyName="assume", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))  # 3
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": [f"arn:aws:iam::{ACCOUNT}:user/corral", FLEET_SESSION]}}]}
    iam.create_role(RoleName="reader", AssumeRolePolicyDocument=json.dumps(trust),
                    MaxSessionDuration=43200)  # 4
    iam.put_role_policy(RoleName="reader", PolicyName="data", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{DATA}", f"arn:aws:s3:::{DATA}/*"]}]}))  # 5
    elsewhere = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/someone-else"}}]}
    iam.create_role(RoleName="locked", AssumeRolePolicyDocument=json.dumps(elsewhere))  # 6
    iam.create_user(UserName="someone-else")  # 7
    corral_only = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/corral"}}]}
    iam.create_role(RoleName="fleet", AssumeRolePolicyDocument=json.dumps(corral_only))
    iam.put_role_policy(RoleName="fleet", PolicyName="assume", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))
    _messaging(iam, endpoint, corral_only)
    iam.create_role(RoleName="deployer", AssumeRolePolicyDocument=json.dumps(corral_only))
    iam.put_role_policy(RoleName="deployer", PolicyName="lambda", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": ["lambda:*", "iam:PassRole", "logs:*"],
            "Resource": "*"}]}))
    s3 = _client("s3", endpoint)
    s3.create_bucket(Bucket=DATA)  # 8
    s3.create_bucket(Bucket=OTHER)  # 9
    s3.put_object(Bucket=DATA, Key="hello.txt", Body=b"hello from s3")  # 10
    return Account(endpoint, key["AccessKeyId"], key["SecretAccessKey"])


def _messaging(iam: Any, endpoint: str, trust: dict[str, Any]) -> None:
    """9 calls: corral's user may find queues and topics and send to them; the publisher
    role may only send, the consumer only receive (moto checks SQS and SNS requests by their
    action alone, against Resource "*": a statement naming a queue's ARN never matches, so
    these are action-scoped); the queues, the topic."""
    iam.put_user_policy(UserName="corral", PolicyName="events", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["sqs:GetQueueUrl", "sqs:GetQueueAttributes",
                                           "sqs:SendMessage", "sns:Publish",
                                           # moto names a batch's action by its own name
                                           # (AWS authorizes it as sqs:SendMessage)
                                           "sqs:SendMessageBatch",
                                           "sns:GetTopicAttributes", "sts:GetCallerIdentity"],
             "Resource": "*"}]}))
    iam.create_role(RoleName="publisher", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName="publisher", PolicyName="send", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]}))
    iam.create_role(RoleName="consumer", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName="consumer", PolicyName="take", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage",
                                          "sqs:GetQueueUrl"],
            "Resource": "*"}]}))
    sqs = _client("sqs", endpoint)
    for name in (EVENTS, JOBS, ELSEWHERE):
        sqs.create_queue(QueueName=name)
    _client("sns", endpoint).create_topic(Name=TOPIC)


_RAW_QUERY = """
import sys
from moto.core import responses
from moto.server import main

_setup = responses.BaseResponse.setup_class

def setup_class(self, request, full_url=None, *args, **kwargs):
    out = _setup(self, request, full_url, *args, **kwargs)
    raw = getattr(request, "environ", {}).get("QUERY_STRING", "")
    if raw and isinstance(self.uri, str):
        self.uri = self.uri.split("?", 1)[0] + "?" + raw
    return out

responses.BaseResponse.setup_class = setup_class


def state(self, request, full_url, headers):
    import json
    from moto.core.model_instances import model_data

    out = {}
    for service, models in sorted(model_data.items()):
        out[service] = {}
        for name, model in sorted(models.items()):
            rows = out[service][name] = []
            for instance in model.instances_tracked:
                row = {}
                for attr in (a for a in dir(instance) if not a.startswith("_")):
                    try:
                        value = getattr(instance, attr)
                        json.dumps(value)
                    except Exception:  # a property that fails (a part's bucket lookup)
                        continue
                    row[attr] = value
                rows.append(row)
    return 200, {"Content-Type": "application/json"}, json.dumps(out)


from moto.moto_api._internal.responses import MotoAPIResponse

MotoAPIResponse.model_data = state
sys.exit(main(sys.argv[1:]))
"""


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def moto_server(root: Path, lambda_image: str | None = None) -> Iterator[Account]:
    """With ``lambda_image`` (``tests/support/lambda_runtime.py``), Lambda invocations run
    in a container of it on the docker daemon (moto's docker SDK, the default socket)."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        pytest.skip("moto_server not installed: scripts/install.sh --test installs "
                    "moto[server] (the test extra)")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (root / "moto.log").open("wb")
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_CALLS)}
    if lambda_image is not None:
        env.update({"MOTO_DOCKER_LAMBDA_IMAGE": lambda_image, "MOTO_PORT": str(port)})
    proc = subprocess.Popen([sys.executable, "-c", _RAW_QUERY, "-H", "127.0.0.1", "-p",
                             str(port)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not _answers(endpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto_server did not answer: "
                                   + (root / "moto.log").read_text()[-2000:])
            time.sleep(0.1)
        yield _make_account(endpoint)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
