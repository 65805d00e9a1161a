"""Resource limits for agents run as host processes: ``limiter.Limiter`` over cgroup v2, v1 and
rlimits (``detect`` picks the layout, ``group`` is one instance's group)."""
