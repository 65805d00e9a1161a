"""The AWS provider, as the daemon holds it: no boto3 here.

Each call to AWS (an agent's AssumeRole, its inputs' download, its artifacts' upload) runs
in a short-lived ``python -m corral.cloud.aws.worker`` that imports boto3, does the one call
and exits: boto3 and botocore's models are about 40 MB resident (``docs/benchmarks.md``),
which a daemon that holds them would keep for the fleet's life (benchmark S2). The request
and its answer (credentials among them) go through the worker's stdin and stdout, never its
command line (``/proc/PID/cmdline`` is readable by every user) nor a file.

corral's own identity is the fleet's ``cloud.aws``: a ``profile`` of the AWS config (the
daemon's ``AWS_CONFIG_FILE``/``AWS_SHARED_CREDENTIALS_FILE`` or ``~/.aws``), or the default
chain; with ``role_arn``, corral first assumes that role and assumes the agents' roles from
it. Each agent gets an AWS config whose ``credential_process`` is corral's ``fetch.py``:
botocore, the AWS CLI and every other SDK call it when their credentials near their
``Expiration``, so every agent refreshes by itself (boto3 has no public auto-refreshing
AssumeRole session: boto/boto3#443).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from typing import Any

from corral.cloud.provider import AgentConfig, CloudError, Grant

# an SDK must find no other credentials than the config's (they would win over it)
DROP = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
        "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CREDENTIAL_EXPIRATION")
CONFIG = "aws-config"
# botocore replaces process credentials 15 min before their end; corral's grant outlives
# that by far unless the duration itself is short (then half of it)
REFRESH = 20 * 60.0
GRANT_TIMEOUT = 60.0
TRANSFER_TIMEOUT = 6 * 3600.0


def _plain(record: Any) -> Any:
    from corral.manifest.decode import dump

    return dump(record, aliases=False)


def call(request: dict[str, Any], *, timeout: float) -> Any:
    """One worker run: ``request`` in, its answer out; a ``CloudError`` (one line) when AWS
    or the worker said no."""
    try:
        proc = subprocess.run([sys.executable, "-m", "corral.cloud.aws.worker"],
                              input=json.dumps(request), capture_output=True, text=True,
                              timeout=timeout, env=dict(os.environ), stdin=None)
    except subprocess.TimeoutExpired:
        raise CloudError(f"{request.get('where', 'cloud.aws')}: no answer from AWS in "
                         f"{timeout:g}s (check cloud.aws.endpoint_url and the network)"
                         ) from None
    try:
        reply = json.loads(proc.stdout)
    except ValueError:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise CloudError(f"{request.get('where', 'cloud.aws')}: the AWS worker failed "
                         f"(exit {proc.returncode}): {tail}") from None
    if "error" in reply:
        raise CloudError(str(reply["error"]))
    return reply["result"]


class AwsProvider:
    name = "aws"

    def __init__(self, fleet: Any, project: str) -> None:
        self._fleet = fleet  # spec's AwsCloud
        self._project = project

    def _request(self, op: str, where: str, **fields: Any) -> dict[str, Any]:
        return {"op": op, "fleet": _plain(self._fleet), "project": self._project,
                "where": where, **fields}

    def grant(self, agent: str, instance: str, access: Any) -> Grant:
        found = call(self._request("grant", f"agents.{agent}.aws", agent=agent,
                                   instance=instance, access=_plain(access)),
                     timeout=GRANT_TIMEOUT)
        doc = found["document"]
        return Grant(doc, float(found["expires"]),
                     (doc["AccessKeyId"], doc["SecretAccessKey"], doc["SessionToken"]),
                     dict(found.get("env") or {}))

    def publish(self, events: list[dict[str, Any]], sqs: str | None, sns: str | None
                ) -> int:
        """The fleet's events to its queue and topic, with corral's own identity."""
        found = call(self._request("publish", "events", events=events, sqs=sqs, sns=sns),
                     timeout=GRANT_TIMEOUT)
        return int(found["sent"])

    def transfer(self, op: str, grant: Grant, where: str, **fields: Any) -> dict[str, Any]:
        """``upload`` or ``download`` (``cloud.aws.s3``) with the agent's grant."""
        moved: dict[str, Any] = call(self._request(op, where, grant=dict(grant.document),
                                                   **fields), timeout=TRANSFER_TIMEOUT)
        return moved

    def refresh_before(self, access: Any) -> float:
        if self._fleet.refresh_before is not None:
            return float(self._fleet.refresh_before)
        return min(REFRESH, float(access.duration) / 2)

    def agent_config(self, access: Any, fetch: list[str], inside: str) -> AgentConfig:
        lines = ["[default]", f"credential_process = {shlex.join(fetch)}"]
        if self._fleet.region:
            lines.append(f"region = {self._fleet.region}")
        if self._fleet.endpoint_url:
            lines.append(f"endpoint_url = {self._fleet.endpoint_url}")
        env = {"AWS_CONFIG_FILE": f"{inside}/{CONFIG}",
               "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true"}
        if self._fleet.region:
            env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = self._fleet.region
        if self._fleet.endpoint_url:
            env["AWS_ENDPOINT_URL"] = self._fleet.endpoint_url
        return AgentConfig({CONFIG: "\n".join(lines) + "\n"}, env, DROP)
