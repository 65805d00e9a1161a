"""What the ray driver (``link``) and its bridge process (``bridge``) say to each other: JSON
lines, one object each.

- driver → bridge: ``{"id": N, "op": OP, ...}`` with OP one of ``OPS``, and the notice
  ``{"op": "ack", "run": RUN, "seq": N}`` (no id, no reply) once a run's output up to chunk N
  is in the log: only then may its node drop it;
- bridge → driver: ``{"id": N, "ok": {...}}`` or ``{"id": N, "error": "one line"}``, and pushed
  events: ``ready`` (first, once connected) or ``failed`` (``problem``, ``fix``), then per run
  ``output`` (``stream``, ``seq``, base64 ``data``), ``eof`` (``stream``) and ``exit`` (``code``,
  ``signal``, ``error``), always in that order for a run.
"""

from __future__ import annotations

OPS = frozenset({"start", "adopt", "leftovers", "stop", "probe", "usage", "close"})
LINE_LIMIT = 16 * 1024 * 1024  # a line: at most a chunk of output, base64'd, and its frame
INSTALL = "pip install 'corral[ray]' (or ray[default]) where corral runs"


class Refused(Exception):
    """A request the bridge could not carry out; its text is the one-line reason."""
