"""Import-light stand-ins for what the daemon would otherwise import from the standard library.

The daemon lives as long as the fleet and every module it imports stays resident; benchmark S2
holds its memory at rest to supervisord's. So ``record`` replaces the per-class code that
``dataclasses`` generates, and ``sha`` replaces ``hashlib`` (which drags in OpenSSL). Everything
the daemon imports at rest is held to this rule; ``tests/e2e/test_daemon_memory.py`` pins it.
"""
