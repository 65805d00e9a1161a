"""The agent and the manifest as pydantic models: the CLI's validation of the two records of
``spec.py`` that do what a record does not say yet (the ``class`` alias, the drivers' blocks
routed to their records, the fleet's ``inherit_env`` folded into each agent's). Everything
below them is ``spec.py``'s records, validated as declared there. Unknown keys are rejected
everywhere; the shortcuts users expect from compose are turned into one full form by
``normalize`` before the types are checked.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from corral.manifest import blocks, decode, normalize, spec
from corral.manifest.spec import AGENT_NAME as AGENT_NAME
from corral.manifest.spec import (
    AgentClass,
    Dependency,
    EnvFile,
    LogsConfig,
    MetricsConfig,
    Needs,
    Probe,
    Replicas,
    Resources,
    RestartPolicy,
    SecretSource,
    SecretUse,
    StopPolicy,
    Volume,
)
from corral.manifest.spec import instance_name as instance_name

# The records below an agent are spec.py's, validated here as they are declared there (their
# rules: ``rules.Within``, ``Before``, ``Whole``...); only the agent and the manifest are still
# models of their own, for what they do that a record does not yet say (the ``class`` alias,
# the drivers' blocks, the fleet's ``inherit_env``).


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Regex = Annotated[str, BeforeValidator(normalize.regex)]


# --- agent and manifest -------------------------------------------------------------------


class Agent(Strict):
    description: str = ""
    class_: AgentClass = Field("io", alias="class")
    isolation: str = "process"
    command: Annotated[list[str], Field(min_length=1)]
    shell: bool = False
    workdir: str = "."
    env: Annotated[dict[str, str], BeforeValidator(normalize.env)] = Field(default_factory=dict)
    env_file: Annotated[list[EnvFile], BeforeValidator(normalize.env_files)] = Field(
        default_factory=list)
    # variables of the `corral` command's environment the agent gets (names or globs); the
    # fleet's top-level list is folded in (Manifest._fleet_inherit_env)
    inherit_env: list[str] = Field(default_factory=list)
    replicas: Replicas = 1
    depends_on: Annotated[dict[str, Dependency], BeforeValidator(normalize.depends_on)] = Field(
        default_factory=dict
    )
    readiness: Probe | None = None
    liveness: Probe | None = None
    ready_log_line: Regex | None = None
    restart: RestartPolicy = RestartPolicy()
    stop: StopPolicy = StopPolicy()
    # the drivers' blocks, validated with the records they declare (``blocks.validated``):
    # agent keys in the file and in the dump, never a key of their own
    options: dict[str, Any] = Field(default_factory=dict, exclude=True)
    resources: Resources = Resources()
    labels: dict[str, str] = Field(default_factory=dict)
    trust: Literal["trusted", "untrusted"] = "trusted"
    # who it runs as on the host (process, venv, sandbox): a user name or a uid; see
    # ownership.identity for the defaults (a sandbox run by root: an unprivileged uid of its own)
    user: Annotated[str | None, BeforeValidator(normalize.user)] = Field(
        default=None, json_schema_extra={"pattern": spec.USER})
    # sandbox and stronger; default none there. loopback:NAME: sandboxed agents naming the
    # same NAME share one loopback (and no other network); compose's internal network
    network: str | None = Field(default=None, json_schema_extra={"pattern": spec.NETWORK})
    volumes: Annotated[list[Volume], BeforeValidator(normalize.volume_entries)] = Field(
        default_factory=list)
    secrets: Annotated[list[SecretUse], BeforeValidator(normalize.secret_uses)] = Field(
        default_factory=list)
    needs: Needs = Needs()

    @model_validator(mode="wrap")
    @classmethod
    def _driver_blocks(cls, value: Any, handler: Any) -> Any:
        """Each driver's block to the record it declares, its errors with the block's path."""
        if not isinstance(value, dict):
            return handler(value)
        return blocks.validated(value, handler, [info.alias or name for name, info in
                                                 cls.model_fields.items()])

    @model_serializer(mode="wrap")
    def _flat_blocks(self, handler: Any, info: Any) -> Any:
        return blocks.flattened(handler(self), self.options)

    @classmethod
    def block_names(cls) -> list[str]:
        """The driver blocks an agent may have (the keys a typo is matched against too)."""
        return blocks.names()

    @model_validator(mode="before")
    @classmethod
    def _command(cls, value: Any) -> Any:
        return normalize.agent_command(value)

    @field_validator("inherit_env")
    @classmethod
    def _inherit_env(cls, value: list[str]) -> list[str]:
        return normalize.inherit_names(value)

    @field_validator("network")
    @classmethod
    def _network_mode(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(spec.NETWORK, value):
            raise ValueError(f"network {value!r} is not one of none, host, loopback:NAME (a "
                             "loopback shared by the sandboxed agents naming it; NAME in "
                             "lower case)")
        return value

    @model_validator(mode="after")
    def _user_needs_a_host_process(self) -> Agent:
        if self.user is not None and self.isolation not in ("process", "venv", "sandbox"):
            raise ValueError(f"user: is for process, venv and sandbox agents; a "
                             f"{self.isolation} agent's user is set inside it (the image's "
                             "USER, the guest's own)")
        return self

    @model_validator(mode="after")
    def _network_needs_a_namespace(self) -> Agent:
        if self.network is not None and self.isolation in ("process", "venv"):
            raise ValueError(f"network: {self.network} needs isolation: sandbox (or container, "
                             f"vm); a {self.isolation} agent shares the host's network")
        if spec.loopback_group(self.network) is not None and self.isolation != "sandbox":
            raise ValueError(f"network: {self.network} is for sandboxed agents; at the "
                             f"{self.isolation} level use none or host (containers of a fleet "
                             "share its project network already)")
        return self

    @property
    def argv(self) -> list[str]:
        """What the driver executes."""
        if self.shell:
            return ["/bin/sh", "-c", " ".join(self.command)]
        return list(self.command)

    def to_spec(self) -> spec.Agent:
        """The plain form drivers run on (through the daemon's own decoder)."""
        return decode.agent(self.model_dump(mode="json", by_alias=True))


class Manifest(Strict):
    version: Literal[1] = 1
    name: str = Field(pattern=AGENT_NAME)
    project_dir: str = "."
    state_dir: str = ".corral"
    metrics: MetricsConfig = MetricsConfig()
    logs: LogsConfig = LogsConfig()
    agents: dict[str, Agent] = Field(default_factory=dict)
    secrets: dict[Annotated[str, Field(pattern=spec.SECRET_NAME)], SecretSource] = Field(
        default_factory=dict)
    inherit_env: list[str] = Field(default_factory=list)  # every agent's, before its own

    @field_validator("inherit_env")
    @classmethod
    def _inherit_env(cls, value: list[str]) -> list[str]:
        return normalize.inherit_names(value)

    @model_validator(mode="before")
    @classmethod
    def _fleet_inherit_env(cls, value: Any) -> Any:
        """The top-level ``inherit_env`` goes into each agent's, first: an agent's list is
        then all it inherits (its spec hash moves when the fleet's list does)."""
        def validated(agent: Agent, fleet: list[str]) -> Agent:  # the loader's, one by one
            both = list(dict.fromkeys([*fleet, *agent.inherit_env]))
            return agent.model_copy(update={"inherit_env": both})

        return normalize.fleet_inherit_env(value, Agent, validated)

    @field_validator("agents")
    @classmethod
    def _agent_names(cls, value: dict[str, Agent]) -> dict[str, Agent]:
        bad = [name for name in value if not re.match(AGENT_NAME, name)]
        if bad:
            raise ValueError(
                f"agent name {bad[0]!r} is not valid: use lowercase letters, digits, '-' and '_'"
            )
        return value

    def to_spec(self) -> spec.Manifest:
        """The plain form the daemon runs on, decoded exactly as the daemon decodes what the
        CLI sends it."""
        return decode.manifest(self.model_dump(mode="json", by_alias=True))

