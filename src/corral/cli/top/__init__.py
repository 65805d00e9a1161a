"""``corral top``: the fleet in a terminal UI (Textual), a client of the daemon like the CLI.

``fleet`` holds what the table shows (pure, no Textual), ``feeds`` reads the daemon's endless
streams in threads of their own, ``messages`` carry what they read to ``app``, the Textual
application. Only ``corral top`` imports ``app`` and ``messages``: no other command pays
for Textual.
"""
