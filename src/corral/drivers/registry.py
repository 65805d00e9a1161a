"""Driver lookup: built-ins plus third-party drivers registered in the ``corral.drivers``
entry-point group. Names only come from the manifest's ``isolation`` key, never dotted paths.

Built-ins win over entry points of the same name, so loading one never reads the installed
packages' metadata: ``importlib.metadata`` (email, zipfile, csv...) would stay resident in the
daemon for nothing (benchmark S2).

Manifest blocks (Nomad's ``TaskConfigSchema``): a driver declares the agent keys it owns as
``blocks = {KEY: record}`` (by convention its own name: ``container:``, ``vm:``, ``ray:``), and
optionally a loader hook ``normalize(agent_name, raw_agent, project_dir) -> (raw, problems)``
and ``hidden_blocks`` (left out of ``corral schema``). Built-ins declare them in a light
options module that the driver class re-exports (``_OPTIONS``), so the CLI's loader and the
daemon's decoder route a block without importing a driver; a test pins that the two agree.
Third-party drivers are asked for them on their class, which is loaded for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from corral.drivers.base import Driver

if TYPE_CHECKING:
    from pathlib import Path

_BUILTIN = {
    "process": "corral.drivers.process:ProcessDriver",
    "venv": "corral.drivers.venv:VenvDriver",
    "sandbox": "corral.drivers.sandbox:SandboxDriver",
    "container": "corral.drivers.container.driver:ContainerDriver",
    "fake": "corral.drivers.fake:FakeDriver",
    "vm": "corral.drivers.vm.driver:VmDriver",
    "ray": "corral.drivers.ray.driver:RayDriver",
}
# block -> the module declaring it (``blocks``, ``hidden``, ``normalize``)
_OPTIONS = {
    "venv": "corral.drivers.host.options",
    "node": "corral.drivers.host.options",
    "container": "corral.drivers.container.options",
    "vm": "corral.drivers.vm.options",
    "fake": "corral.drivers.fake",
    "ray": "corral.drivers.ray.options",
}

Normalize = Callable[[str, Any, "Path"], tuple[Any, list[str]]]


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


def _module(name: str) -> Any:
    return __import__(name, fromlist=["blocks"])


def _declarers() -> list[Any]:
    """What declares blocks: the built-in options modules, then each third-party driver."""
    out: list[Any] = [_module(m) for m in dict.fromkeys(_OPTIONS.values())]
    for name in names():
        if name not in _BUILTIN:
            out.append(load(name))
    return out


@cache
def blocks() -> Mapping[str, type]:
    """Every installed driver's blocks, ``{key: record}``; a key declared twice is the first
    declarer's (the built-ins come first)."""
    found: dict[str, type] = {}
    for declarer in _declarers():
        for key, options in getattr(declarer, "blocks", {}).items():
            found.setdefault(key, options)
    return found


def block(key: str) -> type | None:
    """The record of block ``key``, or None when no driver declares it. A built-in key never
    reads the packages' metadata (the daemon decodes with this)."""
    if key in _OPTIONS:
        found: type = _module(_OPTIONS[key]).blocks[key]
        return found
    return blocks().get(key)


def hidden() -> frozenset[str]:
    """The blocks left out of the public schema (the fake driver's)."""
    out: set[str] = set()
    for declarer in _declarers():
        out.update(getattr(declarer, "hidden", getattr(declarer, "hidden_blocks", ())))
    return frozenset(out)


def normalizers() -> list[Normalize]:
    """The drivers' loader hooks, built-ins first."""
    out: list[Normalize] = []
    for declarer in _declarers():
        hook = getattr(declarer, "normalize", None)
        if callable(hook) and hook not in out:
            out.append(hook)
    return out


def runs_without_command(agent: Any) -> bool:
    """The isolation's hook ``runs_without_command(agent)`` (declared where its blocks are: a
    built-in's options module, a third-party driver's class); False where none is declared."""
    name = agent.isolation
    if name in _OPTIONS:
        declarer: Any = _module(_OPTIONS[name])
    elif name in _table():
        declarer = load(name)
    else:
        return False
    hook = getattr(declarer, "runs_without_command", None)
    return bool(hook(agent)) if callable(hook) else False


def _declarer(name: str) -> Any:
    """Where driver ``name`` declares its hooks: a built-in beside its blocks (never by
    loading the driver; None when it has none), a third-party driver on its class."""
    if name in _BUILTIN:
        return _module(_OPTIONS[name]) if name in _OPTIONS else None
    return load(name)


@cache
def placements() -> Mapping[str, tuple[str, ...]]:
    """Drivers that place agents on a cluster (``placement: NAME``): those declaring
    ``places = (ISOLATION, ...)``, the levels they run there, by their name."""
    out: dict[str, tuple[str, ...]] = {}
    for name in names():
        takes = tuple(getattr(_declarer(name), "places", ()))
        if takes:
            out[name] = takes
    return out


def unplaceable(where: str, agent: Any) -> str | None:
    """Why cluster ``where``'s driver cannot run ``agent`` there (its hook
    ``unplaceable(agent)``, declared beside ``places``); None: it can, or no hook."""
    hook = getattr(_declarer(where), "unplaceable", None)
    found = hook(agent) if callable(hook) else None
    return str(found) if found else None


def levels() -> list[str]:
    """The isolation levels (``isolation: NAME``): every driver but those that only place
    agents of other levels on a cluster (``placement_only = True``: the ray driver)."""
    return [n for n in names() if not getattr(_declarer(n), "placement_only", False)]
