"""What AWS says of corral's own identity (``cloud.aws``), for ``corral doctor`` and
``corral up``: long-lived keys (an access key without a session token) and root's keys.
Imports boto3: asked only for a fleet that declares ``cloud.aws``."""

from __future__ import annotations

from typing import Any

import boto3
import botocore.exceptions as errors
from botocore.config import Config

_QUICK = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1})
# how botocore found the credentials: these hold a long-lived key unless a token comes along
_STATIC = ("env", "shared-credentials-file", "config-file", "explicit", "boto-config")


def warnings(fleet: Any) -> list[str]:
    where = f"cloud.aws (profile {fleet.profile})" if fleet.profile else "cloud.aws"
    try:
        session = boto3.session.Session(profile_name=fleet.profile, region_name=fleet.region)
        creds = session.get_credentials()
    except errors.ProfileNotFound:
        return [f"cloud.aws.profile: no profile {fleet.profile!r} in the AWS config corral "
                "reads (add it with 'aws configure --profile NAME')"]
    except errors.BotoCoreError as exc:
        return [f"{where}: cannot read corral's AWS credentials: {exc}"]
    if creds is None:
        return [f"{where}: corral has no AWS credentials to assume the agents' roles with "
                "(set cloud.aws.profile, or run 'aws sso login')"]
    out = []
    frozen = creds.get_frozen_credentials()
    if creds.method in _STATIC and not frozen.token:
        out.append(f"{where} holds a long-lived access key ({frozen.access_key[:4]}...): "
                   "use an SSO profile or a role (role_arn) with temporary credentials")
    try:
        sts = session.client("sts", endpoint_url=fleet.endpoint_url,
                             region_name=fleet.region or "us-east-1", config=_QUICK)
        arn = str(sts.get_caller_identity()["Arn"])
    except (errors.BotoCoreError, errors.ClientError):
        return out  # unreachable or refused: the agents' start says so, in one line
    if arn.endswith(":root"):
        out.append(f"{where} is the account's root user ({arn}): root keys can do "
                   "everything and cannot be scoped; make an IAM role for corral")
    return out
