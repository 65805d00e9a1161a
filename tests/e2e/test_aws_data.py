"""Artifacts up to S3 and inputs down from it, moved by the daemon with each agent's own
temporary credentials (``aws:``), against a real ``moto_server`` with IAM enforced
(``tests/support/moto.py``), through the real CLI and daemon."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Project
from tests.support.moto import DATA, READER, REGION, Account

pytestmark = pytest.mark.e2e
PY = sys.executable


def _reader_s3(account: Account) -> Any:
    """The test's own look at the bucket: the reader role, assumed as corral's user."""
    import boto3

    sts = boto3.client("sts", endpoint_url=account.endpoint, region_name=REGION,
                       aws_access_key_id=account.access_key,
                       aws_secret_access_key=account.secret_key)
    c = sts.assume_role(RoleArn=READER, RoleSessionName="test-look")["Credentials"]
    return boto3.client("s3", endpoint_url=account.endpoint, region_name=REGION,
                        aws_access_key_id=c["AccessKeyId"],
                        aws_secret_access_key=c["SecretAccessKey"],
                        aws_session_token=c["SessionToken"])


def _events(project: Project, env: dict[str, str]) -> list[dict[str, Any]]:
    out = project.corral("events", "--json", env=env).stdout
    return [json.loads(line) for line in out.splitlines() if line]


def _messages(project: Project, agent: str) -> list[str]:
    return [r["message"] for r in project.records(agent)]


PRODUCE = """\
import os
os.makedirs("out/sub", exist_ok=True)
open("out/result.txt", "w").write("forty-two")
open("out/sub/n.txt", "w").write("nested")
open("skipped.txt", "w").write("not an artifact")
if not os.path.lexists("out/leak"):
    os.symlink("/etc/hostname", "out/leak")  # a daemon run as root must not upload it
print("produced", flush=True)
"""

CONSUME = """\
import os
print("got", open("data/result.txt").read(), open("data/sub/n.txt").read(),
      os.stat("data/result.txt").st_ino, flush=True)
"""


def test_artifacts_reach_s3_and_come_back_as_another_agents_inputs(
        project: Project, aws_account: Account) -> None:
    env = aws_account.env(project.root)
    project.file("produce.py", PRODUCE)
    (project.root / "consumer").mkdir()
    project.file("consumer/consume.py", CONSUME)
    project.write(f"""
        name: awsdata
        cloud: {aws_account.cloud_block()}
        agents:
          producer:
            class: compute
            command: [{PY}, produce.py]
            aws: {{role: {READER}}}
            artifacts: {{to: "s3://{DATA}/runs/{{instance}}/", paths: ["out/**"]}}
          consumer:
            class: compute
            workdir: consumer
            command: [{PY}, consume.py]
            depends_on: {{producer: {{condition: completed_successfully}}}}
            aws: {{role: {READER}}}
            inputs: {{from: "s3://{DATA}/runs/producer.1/out/", to: data}}
    """)
    project.corral("up", "-d", env=env)
    rows = project.wait_for(lambda r: r.get("consumer.1", {}).get("state") == "exited",
                            timeout=60, what="the consumer")
    said = [m for m in _messages(project, "consumer") if m.startswith("got ")]
    assert rows["consumer.1"]["exit_code"] == 0, (said, rows)
    assert said and said[-1].startswith("got forty-two nested "), said
    s3 = _reader_s3(aws_account)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(
        Bucket=DATA, Prefix="runs/producer.1/")["Contents"])
    assert keys == ["runs/producer.1/out/result.txt", "runs/producer.1/out/sub/n.txt"], keys
    head = s3.head_object(Bucket=DATA, Key="runs/producer.1/out/result.txt",
                          ChecksumMode="ENABLED")
    assert head.get("ChecksumSHA256"), head
    uploads = [e for e in _events(project, env) if e["event"] == "artifacts"]
    assert uploads and uploads[0]["ok"] and uploads[0]["files"] == 2, uploads
    assert uploads[0]["to"] == f"s3://{DATA}/runs/producer.1/"
    last = project.ps()["producer.1"]["artifacts"]
    assert last["ok"] and last["files"] == 2 and last["to"] == uploads[0]["to"], last
    assert project.ps()["consumer.1"]["artifacts"] is None
    shown = project.corral("events", "producer", env=env).stdout
    assert f"artifacts 2 files (15 bytes) to s3://{DATA}/runs/producer.1/" in shown, shown
    # a second run of the consumer downloads nothing: the same file, not a new one
    inode = said[-1].split()[-1]
    project.corral("restart", "consumer", env=env)
    project.wait_for(lambda r: len([m for m in _messages(project, "consumer")
                                    if m.startswith("got ")]) >= 2, what="the second run")
    again = [m for m in _messages(project, "consumer") if m.startswith("got ")]
    assert again[-1].split()[-1] == inode, again
    index = json.loads((project.state_dir / "run" / "consumer.1" / "inputs.json").read_text())
    assert sorted(index["objects"]) == keys


def test_a_missing_input_blocks_its_agent_with_one_line(
        project: Project, aws_account: Account) -> None:
    env = aws_account.env(project.root)
    project.write(f"""
        name: awsnoinput
        cloud: {aws_account.cloud_block()}
        agents:
          hungry:
            command: ["sleep", "60"]
            aws: {{role: {READER}}}
            inputs: {{from: "s3://{DATA}/nothing-here/", to: data}}
    """)
    up = project.corral("up", "-d", env=env, check=False)
    assert up.returncode != 0 and "Traceback" not in up.stdout + up.stderr
    rows = project.wait_for(lambda r: r.get("hungry.1", {}).get("state") == "blocked",
                            what="the blocked agent")
    assert rows["hungry.1"]["reason"].startswith(
        f"agents.hungry.inputs: s3://{DATA}/nothing-here/ holds no objects (upload the input "
        "there, or fix inputs.from)"), rows["hungry.1"]["reason"]
    bad = project.corral("config", env=env, check=False)
    assert bad.returncode == 0
    project.write("""
        name: awsnoinput
        agents:
          hungry: {command: ["true"], inputs: {from: "s3://x-bucket/in/"}}
    """)
    bad = project.corral("up", "-d", env=env, check=False)
    assert "agents.hungry.inputs: needs the agent's aws: block" in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


MANY = """\
import os
if not os.path.isdir("out"):  # a run after the daemon's restart finds them made
    os.makedirs("out.tmp")
    for i in range(800):
        open(f"out.tmp/f{i:04d}.bin", "wb").write(os.urandom(2048))
    os.rename("out.tmp", "out")
print("wrote", flush=True)
"""


def test_an_upload_cut_by_a_daemon_kill_resumes_in_the_next_daemon(
        project: Project, aws_account: Account) -> None:
    env = aws_account.env(project.root)
    project.file("many.py", MANY)
    project.write(f"""
        name: awsresume
        cloud: {aws_account.cloud_block()}
        agents:
          maker:
            class: compute
            command: [{PY}, many.py]
            aws: {{role: {READER}}}
            artifacts: {{to: "s3://{DATA}/resume/{{instance}}/", paths: ["out/*.bin"]}}
    """)
    project.corral("up", "-d", env=env)
    index = project.state_dir / "run" / "maker.1" / "artifacts.json"
    deadline = time.monotonic() + 60
    while True:
        try:
            data = json.loads(index.read_text())
        except (OSError, ValueError):
            data = {}
        if data.get("pending") and len(data.get("files", {})) >= 20:
            break
        assert time.monotonic() < deadline and not (data and not data.get("pending")), data
        time.sleep(0.02)
    pid = project.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] \
            != "Z":
        time.sleep(0.05)
    done_before = len(json.loads(index.read_text())["files"])
    assert done_before < 800
    project.corral("up", "-d", env=env)
    deadline = time.monotonic() + 60
    while not any(e["event"] == "artifacts" and e.get("why") == "resume"
                  for e in _events(project, env)):
        assert time.monotonic() < deadline, _events(project, env)
        time.sleep(0.2)
    resumed = next(e for e in _events(project, env) if e.get("why") == "resume")
    assert resumed["ok"], resumed
    assert resumed["unchanged"] >= done_before and resumed["files"] + resumed["unchanged"] == 800
    # the instance the killed daemon left dead runs again; its exit's upload has nothing new
    project.wait_for(lambda r: r["maker.1"]["state"] == "exited", what="the run again")
    last = [e for e in _events(project, env) if e["event"] == "artifacts"][-1]
    assert last["why"] == "exit" and last["files"] == 0 and last["unchanged"] == 800, last
    s3 = _reader_s3(aws_account)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=DATA, Prefix="resume/maker.1/")
    assert sum(len(p.get("Contents", [])) for p in pages) == 800
    assert json.loads(index.read_text())["pending"] is False


def test_an_input_dir_replaced_by_a_link_is_refused_and_nothing_is_written_through_it(
        project: Project, aws_account: Account, tmp_path: Path) -> None:
    """The agent's workdir is its own: a ``data -> elsewhere`` link planted there would have
    a daemon run as root write where the agent may not."""
    env = aws_account.env(project.root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project.root / "box").mkdir()
    (project.root / "box" / "data").symlink_to(elsewhere)
    project.write(f"""
        name: awslink
        cloud: {aws_account.cloud_block()}
        agents:
          linked:
            workdir: box
            command: ["sleep", "60"]
            aws: {{role: {READER}}}
            inputs: {{from: "s3://{DATA}/hello.txt", to: data}}
    """)
    project.corral("up", "-d", env=env, check=False)
    rows = project.wait_for(lambda r: r.get("linked.1", {}).get("state") == "blocked",
                            what="the refused input")
    assert rows["linked.1"]["reason"].startswith(
        f"agents.linked.inputs: cannot make data in {project.root / 'box'}: "), rows
    assert list(elsewhere.iterdir()) == []



TICK = """\
import os, time
os.makedirs("out", exist_ok=True)
open("out/big.bin", "wb").write(os.urandom(9 * 1024 * 1024))  # past the multipart threshold
for i in range(6):
    open("out/tick.txt", "w").write(str(i))
    time.sleep(1)
"""


def test_every_uploads_while_it_runs_and_a_big_file_goes_in_parts(
        project: Project, aws_account: Account) -> None:
    env = aws_account.env(project.root)
    project.file("tick.py", TICK)
    project.write(f"""
        name: awsevery
        cloud: {aws_account.cloud_block()}
        agents:
          ticker:
            class: compute
            command: [{PY}, tick.py]
            aws: {{role: {READER}}}
            artifacts: {{to: "s3://{DATA}/every/{{instance}}/", paths: ["out/*"],
                         when: every 2s}}
    """)
    project.corral("up", "-d", env=env)
    project.wait_for(lambda r: r.get("ticker.1", {}).get("state") == "exited", timeout=60,
                     what="the ticker")
    uploads = [e for e in _events(project, env) if e["event"] == "artifacts"]
    assert all(e["ok"] for e in uploads), uploads
    assert [e["why"] for e in uploads].count("every") >= 1, uploads
    assert uploads[-1]["why"] == "exit", uploads
    s3 = _reader_s3(aws_account)
    tick = s3.get_object(Bucket=DATA, Key="every/ticker.1/out/tick.txt")["Body"].read()
    assert tick == b"5"  # the last upload has the last write
    big = s3.head_object(Bucket=DATA, Key="every/ticker.1/out/big.bin")
    assert big["ContentLength"] == 9 * 1024 * 1024
    assert big["ETag"].strip('"').endswith("-2"), big["ETag"]  # two parts of 8 MiB at most
