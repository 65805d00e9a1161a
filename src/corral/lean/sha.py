"""SHA-256 for the daemon without OpenSSL.

``hashlib`` prefers OpenSSL's implementation, so importing it maps libcrypto into the process:
3.7 MB resident (measured) in a daemon that hashes a few short specs per reconcile and keeps
the memory for the life of the fleet (benchmark S2). CPython also builds its own SHA-256
(``_sha256``, ``_sha2`` from 3.12): the same digests, no OpenSSL. ``hashlib`` remains the
fallback for an interpreter built without it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _implementation() -> Callable[[bytes], Digest]:
    for module, attr in (("_sha2", "sha256"), ("_sha256", "sha256"), ("hashlib", "sha256")):
        try:
            found: Callable[[bytes], Digest] = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
        return found
    raise ImportError("no SHA-256 implementation")


sha256 = _implementation()
