"""corral: run a whole fleet of heterogeneous agents from one declarative file.

The public Python API is what ``__all__`` names: the manifest loader (``load``), the fleet
protocol (``Fleet``) and its two ends (``Client``, the project's daemon over its socket;
``LocalFleet``, a supervisor inside this process), and the errors they raise. Everything else
is internal and may move. ``tests/unit/test_public_api.py`` pins the list.

The names are imported on first use (PEP 562): ``import corral`` stays import-light, because
the CLI's hot paths (``corral ps``) must start fast and the daemon imports this package too.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing it costs ~4 ms on every `corral ps` poll

__version__ = "0.1.0"

# name -> the module that defines it
_LAZY = {
    "Client": "corral.api.client",
    "CorralError": "corral.errors",
    "DaemonNotRunning": "corral.errors",
    "DriverError": "corral.errors",
    "Fleet": "corral.api.protocol",
    "LocalFleet": "corral.api.local",
    "ManifestError": "corral.errors",
    "NotFound": "corral.errors",
    "load": "corral.manifest.loader",
}

__all__ = [
    "Client",
    "CorralError",
    "DaemonNotRunning",
    "DriverError",
    "Fleet",
    "LocalFleet",
    "ManifestError",
    "NotFound",
    "__version__",
    "load",
]

if TYPE_CHECKING:
    from typing import Any

    from corral.api.client import Client
    from corral.api.local import LocalFleet
    from corral.api.protocol import Fleet
    from corral.errors import CorralError, DaemonNotRunning, DriverError, ManifestError, NotFound
    from corral.manifest.loader import load


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'corral' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
