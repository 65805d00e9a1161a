"""Exporter lookup: the built-in formats plus third-party ones registered in the
``corral.exporters`` entry-point group (honcho's pattern). A built-in wins over an entry point
of the same name."""

from __future__ import annotations

from functools import cache

from corral.convert.base import Exporter
from corral.errors import CorralError, UsageError

_BUILTIN = {
    "compose": "corral.convert.export.compose:ComposeExporter",
    "kubernetes": "corral.convert.export.kubernetes:KubernetesExporter",
    "systemd": "corral.convert.export.systemd:SystemdExporter",
    "make": "corral.convert.export.make:MakeExporter",
}
GROUP = "corral.exporters"


@cache
def _table() -> dict[str, str]:
    from importlib.metadata import entry_points

    table = dict(_BUILTIN)
    for ep in entry_points(group=GROUP):
        table.setdefault(ep.name, ep.value)
    return table


def names() -> list[str]:
    return sorted(_table())


def load(name: str) -> Exporter:
    """The exporter of format ``name``, made; a name nobody registered is a usage error."""
    table = _table()
    if name not in table:
        from corral.manifest.hints import did_you_mean

        raise UsageError(f"no exporter for {name!r}{did_you_mean(name, table)}",
                         f"use one of {', '.join(sorted(table))}, or install a package that "
                         f"registers it in the {GROUP!r} entry-point group")
    module_name, _, attr = table[name].partition(":")
    try:
        module = __import__(module_name, fromlist=[attr])
        exporter: Exporter = getattr(module, attr)()
    except (ImportError, AttributeError) as exc:
        raise CorralError(f"the {name!r} exporter ({table[name]}) does not load: {exc}",
                          "reinstall the package that provides it") from None
    return exporter
