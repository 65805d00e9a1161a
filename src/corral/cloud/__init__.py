"""Cloud identities for agents: short-lived, least-privileged credentials by construction.

The shape, so another provider (GCP, Azure) follows without touching the core:

- ``provider.Provider``: what a provider does, blocking and import-heavy (boto3): grant one
  agent temporary credentials (``Grant``), and say how an agent's SDK asks for them again
  (``AgentConfig``: the files and variables that point its SDK at ``fetch.py``).
- ``broker.CredentialBroker``: provider-neutral; caches each instance's grant, replaces it
  before it expires, and serves it on a unix socket of that instance alone (``peer``: the
  connecting process must be the instance's own, by uid and process tree).
- ``fetch.py``: the stdlib-only program an agent's SDK runs (``credential_process``): it reads
  the grant from the socket and prints it.
- ``aws/``: the AWS provider (``provider``: no SDK), whose every call to AWS (STS AssumeRole
  with a session policy, S3 transfers in ``s3``) runs in a short-lived ``worker`` process;
  its pure policy checks (``policy``: ``*`` on ``*``, no policy, admin roles) and what AWS says
  of corral's own identity (``identity``: long-lived or root keys) for ``corral doctor``.

The daemon never imports an SDK: boto3 with two clients is ~40 MB resident, held for the
fleet's life (benchmark S2; ``bench/cloud_rss.py``).

For agents: ``from corral.cloud import fan_out`` (``fanout``), loaded on first use so the
daemon importing this package loads neither it nor boto3.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("fan_out", "Result"):
        from . import fanout

        return getattr(fanout, name)
    raise AttributeError(name)
