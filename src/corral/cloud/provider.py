"""What a cloud provider does for corral's agents; ``PROVIDERS`` names the installed ones.

A provider's calls block (an SDK's HTTP): the broker runs them in a thread. Errors are
``CloudError``: one line naming the block, the problem and the fix; an instance whose grant
fails is BLOCKED with that line and retried (a trust policy fixed, a login renewed).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from corral.secrets import SecretError

# provider name (the agent's block, the fleet's cloud.NAME) -> "module:Class"
PROVIDERS = {"aws": "corral.cloud.aws.provider:AwsProvider"}


class CloudError(SecretError):
    """A grant failed: one line (path, problem, fix). A ``SecretError``: the runner blocks."""


@dataclass(frozen=True, slots=True)
class Grant:
    """Temporary credentials: ``document`` is what the agent's SDK reads (for AWS, the
    ``credential_process`` JSON with its ``Expiration``), ``expires`` epoch seconds,
    ``values`` every secret part (for redaction: never logged, stored or sent elsewhere)."""

    document: Mapping[str, Any]
    expires: float
    values: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # not secret: queue URLs, topic ARNs

    def __repr__(self) -> str:  # no secret in a traceback or a debug print
        return f"Grant(expires={self.expires:.0f})"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """What an agent gets so its SDK asks ``fetch`` by itself: files for its private dir
    (name -> text) and variables for its environment; ``drop``: variables it must not have
    (keys that would win over the config)."""

    files: Mapping[str, str]
    env: Mapping[str, str]
    drop: tuple[str, ...] = ()


class Provider(Protocol):
    name: str

    def grant(self, agent: str, instance: str, access: Any) -> Grant:
        """New temporary credentials for ``instance`` of ``agent`` (its block ``access``)."""
        ...

    def agent_config(self, access: Any, fetch: list[str], inside: str) -> AgentConfig:
        """How the agent's SDK runs ``fetch`` (an argv) for its credentials; ``inside``: its
        private dir as the agent sees it."""
        ...

    def refresh_before(self, access: Any) -> float:
        """How long before its expiry a grant is replaced."""
        ...

    def transfer(self, op: str, grant: Grant, where: str, **fields: Any) -> dict[str, Any]:
        """The provider's object store, with an agent's grant: ``upload`` (url, workdir,
        paths, index) or ``download`` (url, workdir, to, index, uid, gid); returns
        ``{files, bytes, kept}``, or raises ``CloudError``."""
        ...


def load(name: str, fleet: Any, project: str) -> Provider:
    """The provider ``name`` for the fleet's ``cloud.NAME`` block, imported now."""
    module, _, cls = PROVIDERS[name].partition(":")
    try:
        found = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise CloudError(f"cloud.{name}: its SDK is not installed ({exc.name}): "
                         f"pip install 'corral[{name}]'") from None
    provider: Provider = found(fleet, project)
    return provider
