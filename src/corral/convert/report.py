"""What a conversion could not carry as written: one ``Loss`` per manifest field, per agent,
with the reason, shown as text or as JSON (``--report json``). kompose publishes a table of
the keys it drops; corral says it for the very file converted."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

Outcome = Literal["dropped", "changed"]


@dataclass(frozen=True, slots=True)
class Loss:
    """``field``: the path in the source (``liveness.silence``, ``deploy.resources``);
    ``agent``: None for what belongs to the whole fleet. ``changed``: carried, but
    differently (``reason`` says how); ``dropped``: not carried (``reason`` says why)."""

    agent: str | None
    field: str
    outcome: Outcome
    reason: str


@dataclass(slots=True)
class Report:
    """``kind``: what was converted (``export kubernetes``, ``import compose``)."""

    kind: str
    losses: list[Loss] = field(default_factory=list)
    # files written and other facts worth a line (``wrote 12 files to k8s/``)
    notes: list[str] = field(default_factory=list)
    # the losses already listed: a 500-agent export adds thousands (a list scan is quadratic)
    _seen: set[Loss] = field(default_factory=set, repr=False, compare=False)

    def dropped(self, agent: str | None, path: str, reason: str) -> None:
        self._add(Loss(agent, path, "dropped", reason))

    def changed(self, agent: str | None, path: str, reason: str) -> None:
        self._add(Loss(agent, path, "changed", reason))

    def _add(self, loss: Loss) -> None:
        if loss not in self._seen:
            self._seen.add(loss)
            self.losses.append(loss)

    def for_agent(self, agent: str | None) -> list[Loss]:
        return [loss for loss in self.losses if loss.agent == agent]

    def as_json(self) -> str:
        return json.dumps({"kind": self.kind, "losses": [asdict(x) for x in self.losses],
                           "notes": self.notes}, indent=2) + "\n"

    def as_text(self) -> str:
        if not self.losses:
            lines = [f"{self.kind}: every field carried"]
        else:
            dropped = sum(1 for x in self.losses if x.outcome == "dropped")
            lines = [f"{self.kind}: {dropped} dropped, {len(self.losses) - dropped} carried "
                     "differently"]
            agents = list(dict.fromkeys(x.agent for x in self.losses))
            for agent in agents:
                lines.append(f"  {agent if agent is not None else '(fleet)'}:")
                lines += [f"    {x.outcome:8} {x.field}: {x.reason}"
                          for x in self.for_agent(agent)]
        lines += self.notes
        return "\n".join(lines) + "\n"
