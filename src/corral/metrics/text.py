"""corral's own families in Prometheus' text format (0.0.4), written as
``prometheus_client.generate_latest`` writes them, at a fraction of its cost.

``generate_latest`` sorts and escapes each sample's labels anew: at 500 instances corral's own
families are ~7,500 samples, 80 ms a scrape here, most of the 100 ms a scrape may take
(``docs/benchmarks.md``). Here each label pair is escaped once per scrape and shared by the
samples that carry it (each instance's labels recur in every family). Counters and gauges only, the
kinds corral's collector makes; a family of another kind, or with OpenMetrics-only samples
(``_created``), goes through ``generate_latest``'s own writer. A test holds the two to the
same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

_OWN = ("_created", "_gsum", "_gcount")


def _value(value: float) -> str:
    shown: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return shown


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class _One:
    """A collector of one family, for ``generate_latest``'s writer."""

    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterable[Metric]:
        yield self.family


def exposition(families: Iterable[Metric]) -> bytes:
    out: list[str] = []
    pairs: dict[tuple[str, str], str] = {}
    for family in families:
        kind = family.type
        if kind not in ("counter", "gauge") or any(
                s.name.endswith(_OWN) or s.timestamp is not None for s in family.samples):
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_One(family))
            out.append(generate_latest(registry).decode())
            continue
        name = family.name + "_total" if kind == "counter" else family.name
        doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        for sample in family.samples:
            labels = sample.labels
            if labels:
                parts = []
                for pair in sorted(labels.items()):
                    shown = pairs.get(pair)
                    if shown is None:
                        shown = pairs[pair] = f'{pair[0]}="{_escape(pair[1])}"'
                    parts.append(shown)
                out.append(f"{sample.name}{{{','.join(parts)}}} {_value(sample.value)}\n")
            else:
                out.append(f"{sample.name} {_value(sample.value)}\n")
    return "".join(out).encode()
