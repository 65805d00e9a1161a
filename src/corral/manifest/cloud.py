"""The cloud blocks of a manifest: the fleet's ``cloud:`` (where corral's own identity comes
from, per provider) and an agent's ``aws:`` (the least-privileged, short-lived identity it
gets). Plain records like the rest of ``spec``; ``corral.cloud`` acts on them.

An agent's ``aws:`` names the role it assumes and, with ``policy``, an inline session policy
that narrows the role to what this agent declares (STS intersects the two); ``duration`` is
how long each set of temporary credentials lives (STS: 15 min to 12 h).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from corral.lean.record import Record, record
from corral.manifest.bounds import Range
from corral.manifest.rules import Before, Core, Duration, Pattern, Problem, Whole, Within
from corral.manifest.units import parse_duration

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


Role = Annotated[str, Problem(role_problem)]
Session = Annotated[float, Within(SESSION), Before(parse_duration)]


@record(kw_only=True)
class AwsCloud(Core, Record):
    """Where corral's own AWS identity comes from: a ``profile`` of the AWS config (SSO or a
    role are best; long-lived keys are flagged), and/or a ``role_arn`` corral assumes first;
    ``endpoint_url``: an AWS-compatible or local endpoint (and the agents' too).
    ``refresh_before``: how long before expiry corral replaces an agent's credentials
    (default: the shorter of 20 min and half their duration)."""

    region: str | None = None
    profile: str | None = None
    role_arn: Role | None = None
    endpoint_url: Annotated[str, Pattern(r"^https?://[^\s]+$")] | None = None
    refresh_before: Duration | None = None


@record(kw_only=True)
class Cloud(Core, Record):
    aws: AwsCloud | None = None


@record(kw_only=True)
class AwsAccess(Core, Record):
    """An agent's AWS identity: temporary credentials of ``role``, narrowed by ``policy``."""

    __rules__ = Whole(after="cloud.access_rules")

    role: Role
    policy: Annotated[dict[str, Any], Problem(policy_problem)] | None = None
    duration: Session = 3600.0
    session_name: Annotated[str, Pattern(r"^[\w+=,.@-]{2,64}$")] | None = None


def access_rules(access: AwsAccess) -> AwsAccess:
    """The CLI's check of the policy's shape (the daemon's decoder runs ``policy_problem``)."""
    if access.policy is not None and (problem := policy_problem(access.policy)):
        raise ValueError(problem)
    return access
