"""Where a fleet can run besides this host's daemon: ``corral up --target NAME`` applies it to
another engine (Kubernetes first), and ``ps``, ``logs`` and ``down`` follow it there."""
