"""STS AssumeRole per agent, narrowed by its inline session policy: the boto3 half of the AWS
provider, run in ``worker`` (a short-lived process), never in the daemon.

corral's own identity is the fleet's ``cloud.aws``: a ``profile`` of the AWS config (the
daemon's ``AWS_CONFIG_FILE``/``AWS_SHARED_CREDENTIALS_FILE`` or ``~/.aws``), or the default
chain; with ``role_arn``, corral first assumes that role (refreshing it as it goes) and
assumes the agents' roles from it. Each agent gets an AWS config whose ``credential_process``
is corral's ``fetch.py``: botocore, the AWS CLI and every other SDK call it when their
credentials near their ``Expiration``, so every agent refreshes by itself (boto3 has no
public auto-refreshing AssumeRole session: boto/boto3#443).
"""

from __future__ import annotations

import datetime
import json
import re
import threading
import time
from typing import Any

import boto3
import botocore.exceptions as errors
from botocore.config import Config

from corral.cloud.provider import CloudError

BASE_MARGIN = 5 * 60.0  # corral's own role (cloud.aws.role_arn) is replaced this early
_CONFIG = Config(connect_timeout=3, read_timeout=10,
                 retries={"max_attempts": 2, "mode": "standard"})


def _session_name(project: str, instance: str) -> str:
    """RoleSessionName: [\\w+=,.@-]{2,64}; CloudTrail shows it as who did what."""
    return re.sub(r"[^\w+=,.@-]", "-", f"corral-{project}-{instance}")[:64]


def _stamp(when: Any) -> str:
    """ISO 8601 in UTC, as credential_process wants its Expiration."""
    return str(when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


class Sts:
    def __init__(self, fleet: Any, project: str) -> None:
        self._fleet = fleet  # spec's AwsCloud
        self._project = project
        self._lock = threading.Lock()
        self._base: tuple[Any, float] | None = None  # (session, expires) of role_arn's
        self._root: Any = None

    # --- corral's own identity ---------------------------------------------------------

    def _profile_session(self) -> Any:
        if self._root is None:
            try:
                self._root = boto3.session.Session(profile_name=self._fleet.profile,
                                                   region_name=self._fleet.region)
            except errors.ProfileNotFound:
                raise CloudError(f"cloud.aws.profile: no profile {self._fleet.profile!r} in "
                                 "the AWS config corral reads (add it with 'aws configure "
                                 "--profile NAME', or fix the name)") from None
        return self._root

    def _client(self, session: Any, service: str) -> Any:
        return session.client(service, endpoint_url=self._fleet.endpoint_url,
                              region_name=self._fleet.region or "us-east-1", config=_CONFIG)

    def _sts(self) -> Any:
        return self._client(self.session(), "sts")

    def session(self) -> Any:
        """corral's own identity: its profile's session, or role_arn's assumed from it."""
        if self._fleet.role_arn is None:
            return self._profile_session()
        with self._lock:
            if self._base is None or self._base[1] - time.time() < BASE_MARGIN:
                out = self._assume(self._client(self._profile_session(), "sts"),
                                   self._fleet.role_arn, _session_name(self._project, "corral"),
                                   3600, None, where="cloud.aws.role_arn")
                creds = out["Credentials"]
                session = boto3.session.Session(
                    aws_access_key_id=creds["AccessKeyId"],
                    aws_secret_access_key=creds["SecretAccessKey"],
                    aws_session_token=creds["SessionToken"], region_name=self._fleet.region)
                self._base = (session, creds["Expiration"].timestamp())
            return self._base[0]

    def client(self, session: Any, service: str) -> Any:
        return self._client(session, service)

    # --- the agents' ---------------------------------------------------------------------

    def _assume(self, sts: Any, role: str, session_name: str, duration: int,
                policy: dict[str, Any] | None, *, where: str) -> Any:
        kwargs: dict[str, Any] = {"RoleArn": role, "RoleSessionName": session_name,
                                  "DurationSeconds": duration}
        if policy is not None:
            kwargs["Policy"] = json.dumps(policy, separators=(",", ":"))
        endpoint = self._fleet.endpoint_url or "the AWS STS endpoint"
        try:
            return sts.assume_role(**kwargs)
        except errors.NoCredentialsError:
            raise CloudError(f"{where}: corral itself has no AWS credentials to assume {role} "
                             "with (set cloud.aws.profile to a profile of the AWS config, or "
                             "run 'aws sso login')") from None
        except (errors.EndpointConnectionError, errors.ConnectTimeoutError,
                errors.ReadTimeoutError) as exc:
            raise CloudError(f"{where}: cannot reach {endpoint} ({type(exc).__name__}); "
                             "check cloud.aws.endpoint_url and the network") from None
        except errors.NoRegionError:
            raise CloudError("cloud.aws.region: no region for STS (set cloud.aws.region)"
                             ) from None
        except errors.ClientError as exc:
            err = exc.response.get("Error", {})
            code, message = err.get("Code", "error"), err.get("Message", "")
            fix = ("let corral's identity assume it: the role's trust policy must name it "
                   "and its own policy allow sts:AssumeRole on the role"
                   if code in ("AccessDenied", "AccessDeniedException") else
                   "check the role, its maximum session duration and the session policy")
            raise CloudError(f"{where}: AssumeRole of {role} failed: {code}"
                             + (f": {message[:160]}" if message else "") + f" ({fix})"
                             ) from None
        except errors.BotoCoreError as exc:
            raise CloudError(f"{where}: AssumeRole of {role} failed: {exc}") from None

    def grant(self, agent: str, instance: str, access: Any) -> dict[str, Any]:
        """The credential_process document and its end (epoch seconds); with
        ``publishes``, the session policy gains only the sends and ``env`` names the queues'
        URLs and the topics' ARNs (``messaging``)."""
        policy: dict[str, Any] | None = access.policy
        env: dict[str, str] = {}
        publishes = getattr(access, "publishes", None) or []
        if publishes:
            from corral.cloud.aws import messaging

            sends, env = messaging.publishing(self.session(), self._client, publishes,
                                              self._fleet.region or "us-east-1",
                                              f"agents.{agent}.publishes")
            found = (policy or {}).get("Statement", [])
            mine = [found] if isinstance(found, dict) else list(found)
            policy = {"Version": "2012-10-17", "Statement": [*mine, *sends]}
        out = self._assume(self._sts(), access.role,
                           access.session_name or _session_name(self._project, instance),
                           int(access.duration), policy, where=f"agents.{agent}.aws")
        creds = out["Credentials"]
        document = {"Version": 1, "AccessKeyId": creds["AccessKeyId"],
                    "SecretAccessKey": creds["SecretAccessKey"],
                    "SessionToken": creds["SessionToken"],
                    "Expiration": _stamp(creds["Expiration"])}
        return {"document": document, "expires": creds["Expiration"].timestamp(), "env": env}
