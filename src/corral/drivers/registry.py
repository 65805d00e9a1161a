"""Driver lookup: built-ins plus third-party drivers registered in the ``corral.drivers``
entry-point group. Names only come from the manifest's ``isolation`` key, never dotted paths.

Built-ins win over entry points of the same name, so loading one never reads the installed
packages' metadata: ``importlib.metadata`` (email, zipfile, csv...) would stay resident in the
daemon for nothing (benchmark S2).
"""

from __future__ import annotations

from functools import cache

from corral.drivers.base import Driver

_BUILTIN = {
    "process": "corral.drivers.process:ProcessDriver",
    "venv": "corral.drivers.venv:VenvDriver",
    "sandbox": "corral.drivers.sandbox:SandboxDriver",
    "container": "corral.drivers.container.driver:ContainerDriver",
    "fake": "corral.drivers.fake:FakeDriver",
    "vm": "corral.drivers.vm.driver:VmDriver",
}


@cache
def _table() -> dict[str, str]:
    from importlib.metadata import entry_points

    table = dict(_BUILTIN)
    for ep in entry_points(group="corral.drivers"):
        table.setdefault(ep.name, ep.value)
    return table


def names() -> list[str]:
    return sorted(_table())


def load(name: str) -> type[Driver]:
    target = _BUILTIN.get(name) or _table()[name]
    module_name, _, attr = target.partition(":")
    module = __import__(module_name, fromlist=[attr])
    cls: type[Driver] = getattr(module, attr)
    return cls
