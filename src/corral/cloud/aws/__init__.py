"""AWS: agents' credentials from STS AssumeRole with a session policy (``provider``, which
imports boto3), and the checks of policies and identities ``corral doctor`` makes
(``policy``, stdlib only)."""
