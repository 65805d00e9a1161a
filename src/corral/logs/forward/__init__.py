"""Log forwarding: the stored records sent on to OTLP, Loki, Elasticsearch, syslog, Fluent.

The sink's hot path (``logs.sink``, ``logs.records``) knows nothing of this. A forwarder
process (``worker``), started by the daemon only when the manifest has ``logs.forward``,
tails the agents' JSON-lines files with a persisted byte cursor (``tail``) and appends the
records to a bounded on-disk queue per sink (``spool``); a sender per sink (``base``) takes
batches from its queue, sends them, retrying with backoff, and drops them from the queue only
once the sink took them: at-least-once across sink outages and daemon restarts. A full queue
drops the newest records, counted, and says so in the fleet's events; the agents never wait.
Secrets are redacted in the stored records already, so the forwarded ones are too.

The daemon side (``control``) starts and stops the process, hands it the fleet's lifecycle
events (for OTLP traces, ``traces``) and reads back its counters and events.
"""
