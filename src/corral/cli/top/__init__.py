"""``corral top``: the fleet in a terminal UI (Textual), a client of the daemon like the CLI.

``fleet`` holds what the table shows (pure, no Textual), ``feeds`` reads the daemon's endless
streams in threads of their own, ``app`` is the Textual application. Only ``corral top``
imports this package's ``app``: no other command pays for Textual.
"""
