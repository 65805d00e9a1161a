"""The rules of a manifest's cloud blocks (their records are ``spec``'s ``Cloud``,
``AwsCloud`` and ``AwsAccess``): the fleet's ``cloud:`` (where corral's own identity comes
from, per provider) and an agent's ``aws:`` (the least-privileged, short-lived identity it
gets); ``corral.cloud`` acts on them.

An agent's ``aws:`` names the role it assumes and, with ``policy``, an inline session policy
that narrows the role to what this agent declares (STS intersects the two); ``duration`` is
how long each set of temporary credentials lives (STS: 15 min to 12 h).
"""

from __future__ import annotations

import json
import re
from typing import Any

from corral.manifest.bounds import MAX_SIZE, Range

# arn:PARTITION:iam::ACCOUNT:role/PATH/NAME (IAM's own character set for role names and paths)
ROLE_ARN = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$"
# STS: 900 s (its minimum) to 43 200 s (12 h, the longest a role's maximum may be)
SESSION = Range(900, 43200)
POLICY_MAX = 2048  # characters of the compact JSON STS takes as a session policy
PROVIDERS = ("aws",)


def role_problem(value: str) -> str | None:
    if re.fullmatch(ROLE_ARN, value) is None:
        shown = value if len(value) <= 60 else value[:57] + "..."
        return (f"{shown!r} is not an IAM role ARN (write arn:aws:iam::ACCOUNT:role/NAME, "
                "the role's ARN from the IAM console or 'aws iam get-role')")
    return None


def policy_problem(policy: dict[str, Any]) -> str | None:
    """The shape STS takes: a ``Statement`` (one or a list, each with ``Effect``), at most
    2048 characters once compact."""
    statements = policy.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        return "a session policy needs a Statement (a list of {Effect, Action, Resource})"
    for i, st in enumerate(statements):
        if not isinstance(st, dict) or st.get("Effect") not in ("Allow", "Deny"):
            return f"Statement {i}: needs Effect: Allow or Deny"
        if not any(k in st for k in ("Action", "NotAction")):
            return f"Statement {i}: needs an Action"
    size = len(json.dumps(policy, separators=(",", ":")))
    if size > POLICY_MAX:
        return (f"the session policy is {size} characters once compact; STS takes at most "
                f"{POLICY_MAX} (use wildcards or a narrower role)")
    return None


def access_rules(access: Any) -> Any:
    """The CLI's check of the policy's shape (the daemon's decoder runs ``policy_problem``)."""
    if access.policy is not None and (problem := policy_problem(access.policy)):
        raise ValueError(problem)
    return access


# --- events to the cloud (``events:``, an agent's ``publishes:``) ----------------------------

QUEUE = (r"^([A-Za-z0-9_-]{1,80}(\.fifo)?"
         r"|https?://[^\s/]+/[0-9]{12}/[A-Za-z0-9_-]{1,80}(\.fifo)?)$")
TOPIC = (r"^([A-Za-z0-9_-]{1,256}(\.fifo)?"
         r"|arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?)$")
# what ``events:`` sends by default: every lifecycle event of the journal worth a consumer's
# attention (``corral.cloud.events`` names them); ``state`` changes are sent as started,
# completed (exit 0), failed (another exit) and stopped
EVENT_KINDS = ("started", "completed", "failed", "stopped", "restart", "fatal", "oom",
               "unhealthy", "healthy", "artifacts")
SPOOL = Range(1024, MAX_SIZE)  # bytes (a size: "64M")


def queue_problem(value: str) -> str | None:
    if re.fullmatch(QUEUE, value) is None:
        return (f"{value[:60]!r} is not an SQS queue (write its name, or its URL "
                "https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)")
    return None


def topic_problem(value: str) -> str | None:
    if re.fullmatch(TOPIC, value) is None:
        return (f"{value[:60]!r} is not an SNS topic (write its name, or its ARN "
                "arn:aws:sns:REGION:ACCOUNT:NAME)")
    return None


def publish_problem(value: str) -> str | None:
    kind, _, target = value.partition(":")
    if kind == "sqs":
        return queue_problem(target)
    if kind == "sns":
        return topic_problem(target)
    return (f"{value[:60]!r} names no queue or topic (write sqs:QUEUE or sns:TOPIC, a name, "
            "a queue URL or a topic ARN)")


def event_kind_problem(value: str) -> str | None:
    if value not in EVENT_KINDS:
        return f"{value[:40]!r} is not an event corral sends (one of {', '.join(EVENT_KINDS)})"
    return None


S3_URL = r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/.*)?$"


def s3_url_problem(value: str) -> str | None:
    if re.fullmatch(S3_URL, value) is None:
        return (f"{value[:60]!r} is not an S3 URL (write s3://BUCKET/PREFIX/, the bucket in "
                "lower case)")
    return None


def transfer_path_problem(value: str) -> str | None:
    """A path or glob inside the agent's workdir: relative, no ``..``."""
    if not value or value.startswith("/") or ".." in value.split("/"):
        return f"{value[:60]!r} must be relative to the agent's workdir (no leading '/', no '..')"
    return None


def when_problem(value: str) -> str | None:
    if value == "exit":
        return None
    every = value.removeprefix("every ").strip()
    if value.startswith("every "):
        from corral.manifest.units import parse_duration

        try:
            if parse_duration(every) >= 1:
                return None
        except ValueError:
            pass
    return f"{value[:40]!r}: write exit or every DURATION (every 5m; at least 1s)"


def when_every(value: str) -> float | None:
    """The period of ``when: every DURATION``; None for ``exit``."""
    if value == "exit":
        return None
    from corral.manifest.units import parse_duration

    return float(parse_duration(value.removeprefix("every ").strip()))


def split_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> (``bucket``, ``a/b/``)."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix
