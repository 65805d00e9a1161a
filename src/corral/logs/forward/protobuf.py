"""The few protobuf wire-format writers the OTLP messages need (varints, length-delimited
fields, fixed64), so forwarding needs no protobuf library. The tests decode what these write
with the official OTLP schemas (``opentelemetry-proto``)."""

from __future__ import annotations

import struct

_FIXED64 = struct.Struct("<Q")


_SMALL = [bytes((n,)) for n in range(0x80)] + [
    bytes((n & 0x7F | 0x80, n >> 7)) for n in range(0x80, 0x4000)
]


def varint(n: int) -> bytes:
    if 0 <= n < 0x4000:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def message(field: int, body: bytes) -> bytes:
    """A length-delimited field (a message, a string's UTF-8, bytes)."""
    return varint(field << 3 | 2) + varint(len(body)) + body


def string(field: int, text: str) -> bytes:
    return message(field, text.encode("utf-8", "replace"))


def uint(field: int, n: int) -> bytes:
    return varint(field << 3) + varint(n)


def fixed64(field: int, n: int) -> bytes:
    return varint(field << 3 | 1) + _FIXED64.pack(n)


def any_value(value: object) -> bytes:
    """An OTLP ``AnyValue``: strings, bools, ints and floats as themselves; anything else
    (a nested object, a list, null) as its JSON text."""
    if isinstance(value, str):
        return string(1, value)
    if isinstance(value, bool):
        return uint(2, int(value))
    if isinstance(value, int) and -(1 << 63) <= value < (1 << 63):
        return uint(3, value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return varint(4 << 3 | 1) + struct.pack("<d", value)
    import json

    return string(1, json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def key_value(field: int, name: str, value: object) -> bytes:
    """A ``KeyValue`` (key 1, value 2) as field ``field`` of its parent."""
    return message(field, string(1, name) + message(2, any_value(value)))
