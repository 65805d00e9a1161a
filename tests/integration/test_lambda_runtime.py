"""The Lambda fixture really executes code: a function deployed to the real ``moto_server``
runs in a container of the runtime image built from the base image (no echo): its result is
computed from the payload, its prints come back as the log tail, and its exception as a
function error."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

from tests.support import moto

HANDLER = """
import hashlib, sys

def handle(event, context):
    if isinstance(event, list):  # a batch
        return [handle(one, context) for one in event]
    print("resizing", event["n"], "in", context.function_name)
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"n": event["n"], "square": event["n"] ** 2,
            "sha": hashlib.sha256(str(event["n"]).encode()).hexdigest(),
            "python": sys.version_info[:2]}
"""


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", HANDLER)
    return buf.getvalue()


def _deployer(account: moto.Account, pool: int = 10) -> Any:
    import boto3
    from botocore.config import Config

    sts = boto3.client(
        "sts",
        endpoint_url=account.endpoint,
        region_name=moto.REGION,
        aws_access_key_id=account.access_key,
        aws_secret_access_key=account.secret_key,
    )
    c = sts.assume_role(RoleArn=moto.DEPLOYER, RoleSessionName="fixture")["Credentials"]
    return boto3.client(
        "lambda",
        endpoint_url=account.endpoint,
        region_name=moto.REGION,
        aws_access_key_id=c["AccessKeyId"],
        aws_secret_access_key=c["SecretAccessKey"],
        aws_session_token=c["SessionToken"],
        config=Config(max_pool_connections=pool, read_timeout=300),
    )


def test_an_invocation_runs_the_code(aws_lambda_account: moto.Account) -> None:
    import hashlib

    lam = _deployer(aws_lambda_account)
    lam.create_function(
        FunctionName="square",
        Runtime="python3.11",
        Role=moto.DEPLOYER,
        Handler="app.handle",
        Code={"ZipFile": _zip()},
        Timeout=30,
    )
    out = lam.invoke(FunctionName="square", Payload=json.dumps({"n": 7}), LogType="Tail")
    assert "FunctionError" not in out
    assert json.loads(out["Payload"].read()) == {
        "n": 7,
        "square": 49,
        "sha": hashlib.sha256(b"7").hexdigest(),
        "python": [3, 11],
    }
    assert "resizing 7 in square" in base64.b64decode(out["LogResult"]).decode()
    bad = lam.invoke(
        FunctionName="square", Payload=json.dumps({"n": 1, "fail": True}), LogType="Tail"
    )
    assert bad.get("FunctionError")
    assert json.loads(bad["Payload"].read())["errorMessage"] == "asked to fail"
