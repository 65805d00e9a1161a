"""What the log sink hides: every secret value of the fleet, and the forms of it corral can
derive cheaply, in every agent's records.

For a value V (as UTF-8 bytes) the needles are:

- V itself, whatever its length (a leak is worse than a garbled line);
- from 4 bytes on: base64 of V, standard and URL-safe, padded or not (the unpadded form is a
  prefix of the padded one, so one needle covers both: a padding ``=`` may stay visible
  after the ``***``, which says nothing about V); hex, lower and upper case; URL-encoding as
  ``quote`` (with and without ``/`` kept) and ``quote_plus`` give it, with upper- and
  lower-case escapes; JSON string escaping (``ensure_ascii`` on and off, ``\\/``);
- from 8 bytes on: V base64-encoded inside a longer stream (a token inside a base64'd
  header, a JSON blob, a basic-auth pair ``user:V``): V may then start at any of the three
  byte offsets of a 3-byte group, and the characters that depend only on V's bits are
  known for each offset. These middles lose up to 12 bits of V at each end, so they are kept
  only for values of 8 bytes or more (at least 40 bits left: no chance match in a log).

Not covered (said in the README): a value split across lines or records; forms needing a key
or a state (encryption, compression, hashes, a base64 stream wrapped at 76 columns); an
encoding of an encoding (base64 of hex); a value that changes between the agent reading it
and corral resolving it (a rotated password: both the old and the new are hidden once seen).

Speed: needles are tried longest first with ``bytes.__contains__`` (a C search, ~1 GB/s per
needle here) and replaced only where present; with no secret in the fleet nothing runs at
all. One ``re`` alternation of the same needles measured 2-5x slower (no multi-literal
search in ``re``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

MARK = b"***"
MIN_DERIVED = 4  # bytes of a value before its encodings are hidden too
MIN_EMBEDDED = 8  # bytes of a value before its base64 middles are hidden too
_MIN_NEEDLE = 4  # a derived needle shorter than this would hide ordinary text


def _base64_forms(raw: bytes) -> set[bytes]:
    import base64  # here: a fleet without secrets never needs it (the daemon's memory, S2)

    out = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        out.add(encode(raw).rstrip(b"="))
        if len(raw) >= MIN_EMBEDDED:
            for offset in range(3):  # V starts at this byte of a 3-byte group
                text = encode(b"\0" * offset + raw + b"\0\0")
                # character i holds stream bits [6i, 6i + 6): only V's bits from start to end
                start = -(-8 * offset // 6)
                end = 8 * (offset + len(raw)) // 6
                out.add(text[start:end])
    return out


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def _quote(raw: bytes, safe: bytes = b"", plus: bool = False) -> str:
    """``urllib.parse.quote``/``quote_plus`` (a test pins the match): the daemon keeps
    urllib.parse out of its memory (benchmark S2)."""
    keep = _UNRESERVED | frozenset(safe)
    return "".join(chr(c) if c in keep else "+" if plus and c == 0x20 else f"%{c:02X}"
                   for c in raw)


def _url_forms(raw: bytes) -> set[bytes]:
    out = set()
    for text in (_quote(raw), _quote(raw, b"/"), _quote(raw, plus=True)):
        out.add(text.encode())
        if "%" in text:  # some encoders write %2f: the escapes in lower case
            parts = text.split("%")
            out.add("%".join([parts[0], *(p[:2].lower() + p[2:] for p in parts[1:])]).encode())
    return out


def _json_forms(value: str) -> set[bytes]:
    out = set()
    for ascii_only in (True, False):
        text = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        out.add(text.encode())
        if "/" in text:
            out.add(text.replace("/", "\\/").encode())
    return out


def forms(value: str) -> set[bytes]:
    """Every needle that hides ``value`` (empty for an empty value)."""
    raw = value.encode("utf-8", "surrogateescape")
    if not raw:
        return set()
    out = {raw}
    if len(raw) >= MIN_DERIVED:
        hexed = raw.hex().encode()
        out |= {hexed, hexed.upper()}
        out |= _base64_forms(raw) | _url_forms(raw) | _json_forms(value)
    return {n for n in out if n == raw or len(n) >= _MIN_NEEDLE}


class Redactor:
    """The needles of a set of values, longest first; shared by every output of a fleet, so
    a value seen by one agent is hidden in all of them (``add`` updates it in place)."""

    __slots__ = ("_values", "needles")

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self.needles: tuple[bytes, ...] = ()
        self.add(values)

    def add(self, values: Iterable[str]) -> bool:
        """Hide these values too; True if one was new."""
        new = {v for v in values if v and v not in self._values}
        if not new:
            return False
        self._values |= new
        found = set(self.needles)
        for value in new:
            found |= forms(value)
        self.needles = tuple(sorted(found, key=lambda n: (-len(n), n)))
        return True

    def __bool__(self) -> bool:
        return bool(self.needles)

    def __call__(self, data: bytes) -> bytes:
        for needle in self.needles:
            if needle in data:
                data = data.replace(needle, MARK)
        return data
