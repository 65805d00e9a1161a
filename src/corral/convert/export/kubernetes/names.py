"""Names and labels of the objects: Kubernetes wants DNS-1123 names (lower case, digits and
``-``; a Service's starts with a letter, at most 63 characters; a CronJob's at most 52, since
its Jobs add a suffix) and label values of at most 63 characters that start and end with a
letter or digit. Agent names may hold ``_`` and start with a digit, so each is mapped once,
here, and every object of an agent is named from the mapped name (the report says so)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from corral.convert.report import Report
from corral.lean.sha import sha256

MANAGED_BY = "app.kubernetes.io/managed-by"
PART_OF = "app.kubernetes.io/part-of"
PROJECT = "corral.dev/project"
AGENT = "corral.dev/agent"
LOOPBACK = "corral.dev/loopback"
NAME_LIMIT = 63
CRONJOB_LIMIT = 52
_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)$")
_LABEL_KEY = re.compile(r"^(?:[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?"
                        r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


def dns_label(text: str, limit: int = NAME_LIMIT) -> str:
    """``text`` as a DNS-1123 label that starts with a letter: ``_`` and ``.`` become ``-``,
    a leading digit gets ``a-`` before it; past ``limit``, cut and ended by a short hash of
    the whole (so two long names stay apart)."""
    out = re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-") or "x"
    if not out[0].isalpha():
        out = f"a-{out}"
    if len(out) > limit:
        out = f"{out[:limit - 9].rstrip('-')}-{sha256(text.encode()).hexdigest()[:8]}"
    return out


def label_value(text: str) -> str:
    return text if _LABEL_VALUE.match(text) else dns_label(text)


def is_label(key: str, value: str) -> bool:
    return bool(_LABEL_KEY.match(key)) and (value == "" or bool(_LABEL_VALUE.match(value)))


@dataclass(slots=True)
class Names:
    """Each agent's object name and label value, decided once for the fleet (two agents that
    map to one name are told apart by a hash)."""

    project: str
    agents: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, project: str, agents: list[str], report: Report) -> Names:
        names = cls(project)
        taken: set[str] = set()
        for agent in agents:
            name = dns_label(agent)
            if name in taken:
                name = dns_label(f"{name}-{sha256(agent.encode()).hexdigest()[:6]}")
            taken.add(name)
            names.agents[agent] = name
            names.labels[agent] = label_value(agent)
            if name != agent:
                report.changed(agent, "name", f"its objects are named {name!r} (Kubernetes "
                               "names are DNS-1123: lower case, digits and '-', starting "
                               "with a letter)")
        return names

    def of_agent(self, agent: str) -> str:
        return self.agents[agent]

    def fleet_labels(self) -> dict[str, str]:
        """On every object corral writes: what ``corral up --target kubernetes`` prunes by."""
        project = label_value(self.project)
        return {MANAGED_BY: "corral", PART_OF: project, PROJECT: project}

    def agent_labels(self, agent: str) -> dict[str, str]:
        return {**self.fleet_labels(), AGENT: self.labels[agent]}

    def selector(self, agent: str) -> dict[str, str]:
        """What picks an agent's pods: its project and its name."""
        return {PROJECT: label_value(self.project), AGENT: self.labels[agent]}


def meta(name: str, labels: dict[str, str], namespace: str | None,
         annotations: dict[str, str] | None = None) -> dict[str, object]:
    out: dict[str, object] = {"name": name}
    if namespace:
        out["namespace"] = namespace
    out["labels"] = dict(labels)
    if annotations:
        out["annotations"] = annotations
    return out
