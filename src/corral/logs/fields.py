"""The keys corral writes in every record; any other key is the agent's own (a JSON line's
fields), shown after the message as ``key=value``. A line's own key of one of these names is
stored as ``<key>_extracted``. Kept import-free: ``corral logs`` renders with it."""

RESERVED = ("timestamp", "agent", "instance", "run", "stream", "level", "message", "partial")
