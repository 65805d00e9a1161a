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
- ``aws/``: the AWS provider (STS AssumeRole with a session policy) and its pure policy checks
  (``aws.policy``: ``*`` on ``*``, root), which ``corral doctor`` reads without boto3.

The daemon imports a provider only when an agent declares that provider's block (benchmark
S2: boto3 stays out of a daemon whose agents need no cloud).
"""
