"""What ``corral doctor`` and ``corral up`` say of the fleet's AWS identities, from the
manifest alone (no SDK, no network): an agent whose session policy allows ``*`` on ``*``
(administrator), one with no session policy (every permission of its role), roles whose
names say administrator. ``identity`` adds what only AWS can say (root, long-lived keys)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_ADMIN_ROLES = ("admin", "organizationaccountaccessrole", "poweruser")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(policy: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for st in _listed(policy.get("Statement", [])):
        if isinstance(st, dict):
            yield st


def grants_everything(policy: dict[str, Any]) -> bool:
    """An Allow of every action (``*``, ``*:*``) on every resource (``*``): administrator."""
    for st in statements(policy):
        if st.get("Effect") != "Allow":
            continue
        actions = {str(a) for a in _listed(st.get("Action", []))}
        resources = {str(r) for r in _listed(st.get("Resource", "*"))}
        if actions & {"*", "*:*"} and "*" in resources:
            return True
        if "NotAction" in st and "*" in resources:
            return True  # everything but a few actions is administrator too
    return False


def admin_role(arn: str) -> bool:
    name = arn.rsplit("/", 1)[-1].lower()
    return any(word in name for word in _ADMIN_ROLES)


def warnings(manifest: Any) -> list[str]:
    out = []
    fleet = getattr(manifest.cloud, "aws", None)
    if fleet is not None and fleet.role_arn and admin_role(fleet.role_arn):
        out.append(f"cloud.aws.role_arn {fleet.role_arn} looks like an administrator role: "
                   "corral needs only sts:AssumeRole on the agents' roles")
    for name, agent in manifest.agents.items():
        access = agent.aws
        if access is None:
            continue
        if access.policy is not None and grants_everything(access.policy):
            out.append(f"agents.{name}.aws.policy allows * on * (administrator): name the "
                       "actions and resources it needs")
        elif access.policy is None and not access.publishes:
            out.append(f"agents.{name}.aws has no policy: it gets every permission of "
                       f"{access.role}; add a session policy naming what it needs")
        if admin_role(access.role):
            out.append(f"agents.{name}.aws.role {access.role} looks like an administrator "
                       "role: give the agent a role of its own")
    return out
