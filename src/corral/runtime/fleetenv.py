"""The supervisor's side of environments: what ``corral up`` sent, one environment per agent
spec (built by ``corral.environ``), the fleet's one redactor, and what a restarted daemon
needs to start agents the same way."""

from __future__ import annotations

from collections.abc import Mapping

from corral import environ
from corral.logs.redact import Redactor
from corral.manifest import peers
from corral.manifest.spec import Agent, Manifest
from corral.runtime.store import Store
from corral.secrets import looks_like_credential

_META = "inherited_env"


class FleetEnv:
    def __init__(self, base: Mapping[str, str], store: Store) -> None:
        # the daemon's own environment (already clean: see corral.environ); agents get its
        # allow-listed part
        self.base = dict(base)
        self.store = store
        # what `corral up` sent from its environment: the secrets' environment sources and
        # what inherit_env names (memory only; the non-credential part is in the store too)
        self.sent: dict[str, str] = {}
        # one for every output of the fleet: a secret one agent reads is hidden in all logs
        self.redactor = Redactor()
        self._envs: dict[str, tuple[Agent, dict[str, str]]] = {}

    def receive(self, sent: Mapping[str, str]) -> None:
        self.sent = dict(sent)
        self._envs.clear()  # inherited values may have changed

    def agent(self, manifest: Manifest, name: str, spec: Agent, state_dir: str
              ) -> dict[str, str]:
        """What every replica of ``name`` has in its environment, built once per spec and
        per ``corral up``: a copy per instance was ~1 KB each of 500 idle instances (S2)."""
        cached = self._envs.get(name)
        if cached is not None and cached[0] is spec:  # a new manifest has new specs
            return cached[1]
        env = environ.agent_environment(
            spec, project=manifest.name, name=name, state_dir=state_dir, base=self.base,
            given=self.sent, inherit=environ.patterns(manifest, spec),
            withheld=environ.sources(manifest), peers=peers.environment(manifest.agents, name))
        self._envs[name] = (spec, env)
        return env

    def inherited(self, manifest: Manifest, spec: Agent) -> dict[str, str]:
        return environ.inherited(environ.patterns(manifest, spec), self.sent,
                                 environ.sources(manifest))

    def digest(self, manifest: Manifest, spec: Agent) -> bytes:
        """For the spec hash: a changed inherited value restarts the agent, as a changed env
        value does. A credential's value stays out of the stored hash (its name is in)."""
        items = sorted((k, "" if looks_like_credential(k) else v)
                       for k, v in self.inherited(manifest, spec).items())
        return repr(items).encode() if items else b""

    def applied(self, manifest: Manifest) -> None:
        """A manifest was applied: keep the inherited values a restarted daemon needs
        (credential-looking ones and secrets' sources stay in memory: the next `corral up`
        sends them again); hide the credentials inherit_env names, unless too short to hide
        without garbling every log (a declared secret is hidden whatever its length)."""
        sources = set(environ.sources(manifest))
        kept = {k: v for spec in manifest.agents.values()
                for k, v in self.inherited(manifest, spec).items()
                if not looks_like_credential(k) and k not in sources}
        self.store.set_meta(_META, kept)
        self.redactor.add(v for k, v in self.sent.items()
                          if looks_like_credential(k) and len(v) >= 4)

    def restore(self) -> None:
        """After a daemon restart: what the last ``applied`` kept."""
        kept = self.store.get_meta(_META)
        if isinstance(kept, dict):
            self.receive({str(k): str(v) for k, v in kept.items()})
