"""The fleet's events to SQS and agents that publish, through the real CLI and daemon,
against a real ``moto_server`` with IAM enforced (``tests/support/moto.py``): corral's own
identity may find queues and send; the consumer agent's role may receive only; the
publisher's role may send only.

moto enforces a role's own policies on assumed credentials, not the session policy, and it
checks SQS requests by action alone (against Resource "*"): the ReceiveMessage and
DeleteQueue denials below are moto's, enforced; the denial on another queue is the session
policy's, which moto cannot evaluate, so what corral narrowed the session to
(sqs:SendMessage on the agent's queue's ARN, nothing else) is read back from moto's state,
and the send to another queue is shown to pass moto (a real AWS would refuse it)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from tests.e2e.conftest import Project
from tests.e2e.test_aws_identity import _assumed
from tests.support.moto import (
    ACCOUNT,
    CONSUMER,
    ELSEWHERE,
    EVENTS,
    JOBS,
    PUBLISHER,
    REGION,
    TOPIC,
    Account,
)

pytestmark = pytest.mark.e2e
PY = sys.executable

CONSUME = """\
import json, sys, time
import boto3
sqs = boto3.client("sqs")
url = sqs.get_queue_url(QueueName=sys.argv[1])["QueueUrl"]
want = set(sys.argv[2:])
seen = []
deadline = time.time() + 60
while time.time() < deadline and not want <= {(m["event"] + ":" + m["agent"]) for m in seen}:
    for m in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1,
                                 MaxNumberOfMessages=10).get("Messages", []):
        seen.append(json.loads(m["Body"]))
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
for m in seen:
    print("got", json.dumps(m, sort_keys=True), flush=True)
print("done", flush=True)
"""

PUBLISH = """\
import os, sys
import boto3, botocore.exceptions as e
sqs = boto3.client("sqs")
url = os.environ["CORRAL_SQS_CORRAL_JOBS"]
other = url.rsplit("/", 1)[0] + "/" + sys.argv[1]
def attempt(what, call):
    try:
        call()
        print(what, "ok", flush=True)
    except e.ClientError as exc:
        print(what, "denied", exc.response["Error"]["Code"], flush=True)
attempt("send", lambda: sqs.send_message(QueueUrl=url, MessageBody="job-1"))
attempt("send-other", lambda: sqs.send_message(QueueUrl=other, MessageBody="no"))
attempt("receive", lambda: sqs.receive_message(QueueUrl=url))
attempt("delete-queue", lambda: sqs.delete_queue(QueueUrl=url))
print("url", url, flush=True)
"""


def _messages(project: Project, agent: str) -> list[str]:
    return [r["message"] for r in project.records(agent)]


def _exited(project: Project, *names: str) -> dict[str, dict[str, Any]]:
    return project.wait_for(lambda r: all(r.get(n, {}).get("state") == "exited"
                                          for n in names), what=f"{names} to exit",
                            timeout=120)


def test_an_sqs_consumer_agent_receives_the_fleets_events(
        project: Project, aws_account: Account) -> None:
    env = aws_account.env(project.root)
    project.file("consume.py", CONSUME)
    project.file("fail.py", "import sys; print('failing', flush=True); sys.exit(3)\n")
    project.write(f"""
        name: awsevents
        cloud: {aws_account.cloud_block()}
        events: {{sqs: {EVENTS}}}
        agents:
          consumer:
            class: compute
            command: [{PY}, consume.py, {EVENTS}, "completed:job", "fatal:broken"]
            aws: {{role: {CONSUMER}}}
          job:
            class: compute
            command: [{PY}, -c, "print('job done')"]
          broken:
            class: compute
            command: [{PY}, fail.py]
            restart: {{policy: on-failure, max_restarts: 1, window: 60s,
                       backoff: {{initial: 0.1s, max: 0.1s}}}}
    """)
    project.corral("up", "-d", env=env, check=False)  # non-zero: broken is fatal
    _exited(project, "consumer.1")
    said = _messages(project, "consumer")
    got = [json.loads(m[4:]) for m in said if m.startswith("got ")]
    assert "done" in said, said
    completed = [m for m in got if m["event"] == "completed" and m["agent"] == "job"]
    assert completed and completed[0]["instance"] == "job.1", got
    assert completed[0]["exit_code"] == 0 and completed[0]["project"] == "awsevents", got
    fatal = [m for m in got if m["event"] == "fatal" and m["agent"] == "broken"]
    assert fatal and fatal[0]["state"] == "fatal", got
    assert any(m["event"] == "restart" and m["agent"] == "broken" for m in got), got
    assert any(m["event"] == "started" and m["agent"] == "job" for m in got), got
    assert not any("AccessKeyId" in json.dumps(m) for m in got)


def test_a_publishing_agent_sends_to_its_queue_only(
        project: Project, aws_account: Account) -> None:
    env = aws_account.env(project.root)
    project.file("publish.py", PUBLISH)
    project.write(f"""
        name: awspub
        cloud: {aws_account.cloud_block(publish_role=PUBLISHER)}
        agents:
          pub:
            class: compute
            command: [{PY}, publish.py, {ELSEWHERE}]
            publishes: [sqs:{JOBS}]
    """)
    project.corral("up", "-d", env=env)
    _exited(project, "pub.1")
    said = _messages(project, "pub")
    assert "send ok" in said, said
    assert "send-other ok" in said, said  # moto: no session policy, no resource check
    # moto's SQS denial reaches botocore as a bare 403 (AWS says AccessDenied)
    assert any(m.startswith("receive denied ") for m in said), said
    assert any(m.startswith("delete-queue denied ") for m in said), said
    assert f"url {aws_account.endpoint}/{ACCOUNT}/{JOBS}" in said or any(
        m.startswith("url ") and m.endswith(f"/{ACCOUNT}/{JOBS}") for m in said), said
    roles = [r for r in _assumed(aws_account.state()["sts"])
             if r.get("session_name") == "corral-awspub-pub.1"]
    assert roles and roles[-1]["role_arn"] == PUBLISHER, roles
    assert json.loads(roles[-1]["policy"]) == {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sqs:SendMessage",
        "Resource": [f"arn:aws:sqs:{REGION}:{ACCOUNT}:{JOBS}"]}]}


def test_bad_queue_input_says_one_line(project: Project, aws_account: Account) -> None:
    env = aws_account.env(project.root)
    project.write(f"""
        name: awsbadq
        cloud: {aws_account.cloud_block(publish_role=PUBLISHER)}
        agents:
          pub:
            class: compute
            command: [{PY}, -c, "print(1)"]
            publishes: [kafka:jobs]
    """)
    out = project.corral("up", "-d", env=env, check=False)
    assert out.returncode != 0
    assert "agents.pub.publishes" in out.stderr and "sqs:QUEUE" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    project.write(f"""
        name: awsbadq
        cloud: {aws_account.cloud_block(publish_role=PUBLISHER)}
        agents:
          pub:
            class: compute
            command: [{PY}, -c, "print(1)"]
            publishes: [sqs:no-such-queue]
    """)
    project.corral("up", "-d", env=env, check=False)  # non-zero: pub.1 is blocked
    rows = project.wait_for(lambda r: r.get("pub.1", {}).get("state") == "blocked",
                            what="pub.1 blocked")
    assert "no SQS queue no-such-queue" in rows["pub.1"]["reason"], rows


def test_events_reach_an_sns_topic_named_by_its_name(
        project: Project, aws_account: Account) -> None:
    """The topic's ARN is made from the caller's account and checked; what moto's topic
    got is read from its state (``sent_notifications``)."""
    env = aws_account.env(project.root)
    project.write(f"""
        name: awssns
        cloud: {aws_account.cloud_block()}
        events: {{sns: {TOPIC}, kinds: [completed]}}
        agents:
          job:
            class: compute
            command: [{PY}, -c, "print('done')"]
    """)
    project.corral("up", "-d", env=env)

    def sent() -> list[dict[str, Any]]:
        found = json.dumps(aws_account.state().get("sns", {}))
        return [json.loads(m) for m in _bodies(json.loads(found))]

    deadline = time.monotonic() + 60
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not got:
        got = [m for m in sent() if m.get("project") == "awssns"]
        time.sleep(0.5)
    assert [m["event"] for m in got] == ["completed"], got
    assert got[0]["instance"] == "job.1" and got[0]["exit_code"] == 0, got


def _bodies(found: Any) -> list[str]:
    """The messages of moto's topics' ``sent_notifications`` (id, message, ...)."""
    out: list[str] = []
    if isinstance(found, dict):
        for key, value in found.items():
            if key == "sent_notifications" and isinstance(value, list):
                out += [n[1] for n in value if isinstance(n, list) and len(n) > 1]
            else:
                out += _bodies(value)
    elif isinstance(found, list):
        for value in found:
            out += _bodies(value)
    return out
