"""An agent's own exposition, checked line by line and re-exposed with its agent and instance.

An agent is not trusted to write a valid exposition, and one bad line on corral's ``/metrics``
would fail Prometheus' whole scrape of the fleet. So each line is matched against the text
format (0.0.4) by anchored regular expressions (C speed: prometheus_client's parser costs
~12 us a sample, too slow for 500 instances at every scrape) and only lines that match are
kept, rewritten, never copied as they are:

- a sample gets ``agent`` and ``instance`` labels first; its own labels of those names become
  ``exported_agent`` and ``exported_instance`` (as Prometheus' ``honor_labels: false``);
- a sample with a label name twice, a reserved ``__`` label or a bad value (one past the float
  range too: Prometheus fails the whole scrape on ``1e400``) is dropped, as is every family
  named ``corral_*`` (corral's own names: an agent cannot pass for the daemon);
- timestamps are dropped (the scrape's time is corral's); ``_created`` samples too;
- each family is written once, its samples from every instance together under one ``HELP``
  and ``TYPE``; an instance whose family has another type than the first instance's has
  those samples dropped, and so is a family named as an earlier one's samples (``foo_total``
  after counter ``foo``: Prometheus refuses a ``TYPE`` line after samples of its name).

``parse`` gives an instance's families or raises ``Refused`` (more than ``max_samples``);
``render`` writes the families of many instances.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_VALUE = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[Ii]nf|NaN)"
_PAIR = r'[a-zA-Z_][a-zA-Z0-9_]*[ \t]*=[ \t]*"(?:[^"\\\n]|\\[\\"n])*"'
# no two runs of blanks touch (each alternative starts with something else): linear time on
# any line, a hostile one too
_SAMPLE = re.compile(
    rf"(?P<name>{NAME})"
    rf"(?:[ \t]*\{{[ \t]*(?P<labels>{_PAIR}(?:[ \t]*,[ \t]*{_PAIR})*)?(?:[ \t]*,)?[ \t]*\}})?"
    rf"[ \t]+(?P<value>{_VALUE})(?:[ \t]+-?\d+)?[ \t]*")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\[\\"n])*)"')
_NAMES = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"(?:[^"\\\n]|\\[\\"n])*"')
_BAD_ESCAPE = re.compile(r"\\(?![\\n])")
_META = re.compile(rf"#[ \t]+(HELP|TYPE)[ \t]+({NAME})(?:[ \t]+(.*))?")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
# the samples a family of each type has, by suffix of its name ("" the name itself)
_SUFFIXES = {"counter": ("_total", ""), "histogram": ("_bucket", "_sum", "_count"),
             "summary": ("_sum", "_count", ""), "gauge": ("",), "untyped": ("",)}
_RENAMED = {"agent": "exported_agent", "instance": "exported_instance"}
OWN_PREFIX = "corral_"
_CREATED = {"counter", "histogram", "summary"}


class Refused(Exception):
    """The exposition is refused whole (too many samples): the scrape counts as failed."""


@dataclass(slots=True)
class Family:
    kind: str
    help: str = ""
    lines: list[str] = field(default_factory=list)  # samples, rewritten, each ending in \n
    typed: bool = False  # a TYPE line said its kind


_UNTYPED = Family("untyped")
_UNSEEN: tuple[str, Family] = ("", _UNTYPED)


@dataclass(slots=True)
class Parsed:
    families: dict[str, Family]
    samples: int = 0
    dropped: int = 0


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family_of(name: str, declared: dict[str, Family]) -> str | None:
    """The declared family a sample name belongs to (``foo_total`` to counter ``foo``)."""
    if name in declared:
        kind = declared[name].kind
        return name if "" in _SUFFIXES[kind] else None
    for suffix in ("_total", "_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if base in declared and suffix in _SUFFIXES[declared[base].kind]:
                return base
    return None


def _created(base: str, declared: dict[str, Family]) -> bool:
    return (declared.get(base, _UNTYPED).kind in _CREATED
            or declared.get(base + "_total", _UNTYPED).kind == "counter")


def parse(text: str, agent: str, instance: str, *, max_samples: int) -> Parsed:
    """An instance's exposition as families of rewritten samples (see the module's doc)."""
    head = f'agent="{_quote(agent)}",instance="{_quote(instance)}"'
    out = Parsed({})
    declared: dict[str, Family] = {}
    homes: dict[str, tuple[str, Family] | None] = {}  # sample name -> its family, once found
    lines = out.families
    match, names_of = _SAMPLE.fullmatch, _NAMES.findall
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        if not line:
            continue
        if line[0] == "#":
            meta = _META.fullmatch(line)
            if meta is not None:
                _declare(declared, *meta.groups())
                homes.clear()
            continue
        m = match(line)
        if m is None:
            out.dropped += 1
            continue
        name, labels, value = m.group("name", "labels", "value")
        if (len(value) > 16 or "e" in value or "E" in value) and _overflows(value):
            out.dropped += 1  # Prometheus fails a whole scrape on 1e400
            continue
        home = homes.get(name, _UNSEEN)
        if home is _UNSEEN:
            home = homes[name] = _home(name, declared)
        if home is None:
            out.dropped += name[-8:] != "_created"  # a counter's creation time: left out
            continue
        if labels:
            names = names_of(labels)
            twice = len(names) > 1 and len(set(names)) < len(names)
            if twice or ("__" in labels and any(k.startswith("__") for k in names)):
                out.dropped += 1
                continue
            if "agent" in names or "instance" in names:
                if any(_RENAMED.get(k, "") in names for k in names):
                    out.dropped += 1
                    continue
                labels = ",".join(f'{_RENAMED.get(k, k)}="{v}"' for k, v in _LABEL.findall(labels))
            elif " " in labels or "\t" in labels:
                labels = ",".join(f'{k}="{v}"' for k, v in _LABEL.findall(labels))
            sample = f"{name}{{{head},{labels}}} {value}\n"
        else:
            sample = f"{name}{{{head}}} {value}\n"
        out.samples += 1
        if out.samples > max_samples:
            raise Refused(f"more than {max_samples} samples")
        base, family = home
        family.lines.append(sample)
        if base not in lines:
            lines[base] = family
    return out


def _overflows(value: str) -> bool:
    """A number past the float range (not written as Inf), which Prometheus refuses."""
    return math.isinf(float(value)) and value[-1] not in "fF"


def _home(name: str, declared: dict[str, Family]) -> tuple[str, Family] | None:
    """The family a sample of this name goes to (its own, untyped, if none is declared);
    None to leave it out: a ``_created`` sample, a name of corral's, one that clashes."""
    if name.endswith("_created") and _created(name[:-8], declared):
        return None
    base = _family_of(name, declared)
    if base is None:
        base = name
        if declared.setdefault(name, Family("untyped")).kind != "untyped":
            return None  # a typed family's name without the suffix its kind takes
    if base.startswith(OWN_PREFIX) or name.startswith(OWN_PREFIX):
        return None
    return base, declared[base]


def _declare(declared: dict[str, Family], what: str, name: str, rest: str | None) -> None:
    """A ``TYPE`` line counts before the family's first sample, once; ``HELP`` once."""
    family = declared.get(name)
    if what == "TYPE":
        kind = (rest or "").strip()
        if kind in TYPES and (family is None or (not family.lines and not family.typed)):
            declared[name] = Family(kind, family.help if family else "", typed=True)
        return
    if family is None:
        family = declared[name] = Family("untyped")
    if not family.help:
        family.help = _BAD_ESCAPE.sub(r"\\\\", rest or "")


def render(instances: list[Parsed]) -> tuple[str, dict[int, int]]:
    """The families of all ``instances``, each once: (the text, samples dropped per index in
    ``instances``). Dropped: a family another instance gave another type first, and one whose
    name an earlier family's samples have (``foo_total`` after counter ``foo``), whose
    ``TYPE`` line Prometheus would refuse, failing the scrape of the whole fleet."""
    merged: dict[str, tuple[Family, list[str], list[tuple[int, int]]]] = {}
    clashes: dict[int, int] = {}
    for i, parsed in enumerate(instances):
        for name, family in parsed.families.items():
            first = merged.get(name)
            if first is None:
                merged[name] = (family, [*family.lines], [(i, len(family.lines))])
            elif first[0].kind == family.kind:
                first[1].extend(family.lines)
                first[2].append((i, len(family.lines)))
            else:
                clashes[i] = clashes.get(i, 0) + len(family.lines)
    parts: list[str] = []
    sampled: set[str] = set()  # the sample names written so far (each family's possible ones)
    for name, (family, lines, given) in merged.items():
        if name in sampled:
            for i, n in given:
                clashes[i] = clashes.get(i, 0) + n
            continue
        sampled.update(name + suffix for suffix in _SUFFIXES[family.kind])
        parts.append(f"# HELP {name} {family.help}\n# TYPE {name} {family.kind}\n")
        parts.extend(lines)
    return "".join(parts), clashes
