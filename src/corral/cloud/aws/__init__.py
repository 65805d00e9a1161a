"""AWS: agents' credentials from STS AssumeRole with a session policy and their S3 inputs and
artifacts (``provider``, the daemon's side, no SDK; ``worker``, the process that imports
boto3 for one call: ``sts``, ``s3``), and the checks ``corral doctor`` makes (``policy``,
stdlib only; ``identity``, asking AWS)."""
