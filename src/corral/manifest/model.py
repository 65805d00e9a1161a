"""The manifest as frozen, fully typed data: the CLI's validation (the daemon holds
``spec.py``'s records). Unknown keys are rejected everywhere; the shortcuts users expect
from compose are turned into one full form by ``normalize`` before the types are checked.
A driver's block is validated with the record its driver declares (``blocks``).
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
from corral.manifest.rules import Duration, Size
from corral.manifest.spec import AGENT_NAME as AGENT_NAME
from corral.manifest.spec import (
    Cpus,
    Factor,
    Keep,
    Memory,
    Pids,
    Port,
    Replicas,
    Restarts,
    Status,
    Threshold,
)
from corral.manifest.spec import instance_name as instance_name

# the numbers' ranges are spec.py's (``rules.Within`` markers), read here by pydantic

AgentClass = Literal["compute", "io", "service", "ai"]
RestartName = Literal["no", "on-failure", "always", "unless-stopped"]
Condition = Literal["started", "healthy", "completed", "completed_successfully", "log_ready"]
ProbeAction = Literal["none", "restart", "stop", "kill"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Regex = Annotated[str, BeforeValidator(normalize.regex)]
Command = Annotated[list[str], BeforeValidator(normalize.command_list), Field(min_length=1)]
SignalName = Annotated[str, BeforeValidator(normalize.signal_name)]


# --- probes -------------------------------------------------------------------------------


class ExecCheck(Strict):
    command: Command


class HttpCheck(Strict):
    port: Port
    host: str = "127.0.0.1"
    path: str = "/"
    scheme: Literal["http", "https"] = "http"
    status: list[Status] = Field(
        default_factory=lambda: list(range(200, 400)), min_length=1)


class TcpCheck(Strict):
    port: Port
    host: str = "127.0.0.1"


class LogLineCheck(Strict):
    pattern: Regex


class Probe(Strict):
    """One health probe, Kubernetes semantics; exactly one of exec/http/tcp/log_line."""

    exec: ExecCheck | None = None
    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    log_line: LogLineCheck | None = None
    initial_delay: Duration = 0.0
    period: Duration = 10.0
    timeout: Duration = 1.0
    success_threshold: Threshold = 1
    failure_threshold: Threshold = 3
    # None means: the default for the probe's role (liveness: restart, readiness: none).
    action: ProbeAction | None = None

    @model_validator(mode="before")
    @classmethod
    def _shortcuts(cls, value: Any) -> Any:
        return normalize.probe_shortcuts(value)

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Probe:
        kinds = [k for k in ("exec", "http", "tcp", "log_line") if getattr(self, k) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(
                f"a probe needs exactly one of exec, http, tcp, log_line (found: {found})"
            )
        return self

    @property
    def kind(self) -> str:
        for k in ("exec", "http", "tcp", "log_line"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated probe has a kind")


# --- restart and stop ---------------------------------------------------------------------


class Backoff(Strict):
    """Delay before restart number n is ``initial * factor**(n-1)``, capped at ``max``; the
    count resets once the instance has stayed up for ``reset_after`` (PM2's manners)."""

    initial: Duration = 1.0
    factor: Factor = 1.5
    max: Duration = 15.0
    reset_after: Duration = 30.0


class RestartPolicy(Strict):
    policy: RestartName = "on-failure"
    max_restarts: Restarts | None = None  # None: unlimited
    window: Duration = 60.0  # max_restarts counts restarts within this sliding window
    backoff: Backoff = Backoff()

    @model_validator(mode="before")
    @classmethod
    def _shortcut(cls, value: Any) -> Any:
        return normalize.restart(value)


class StopPolicy(Strict):
    signal: SignalName = "SIGTERM"
    timeout: Duration = 10.0


# --- dependencies and environment ---------------------------------------------------------


class Dependency(Strict):
    condition: Condition = "started"
    required: bool = True  # compose: a missing/disabled optional dependency is skipped
    restart: bool = False  # compose: restart this agent when the dependency restarts


class EnvFile(Strict):
    path: str
    required: bool = True


class Resources(Strict):
    """Per-instance limits (compose names), enforced by ``limits.limiter`` through cgroups."""

    cpus: Cpus | None = None
    memory: Memory | None = None  # hard limit: past it the kernel OOM-kills
    memory_reservation: Memory | None = None  # soft: reclaimed first under pressure
    memory_high: Memory | None = None  # throttled past it (cgroup v2 only)
    pids: Pids | None = None

    @model_validator(mode="after")
    def _below_the_hard_limit(self) -> Resources:
        for name in ("memory_reservation", "memory_high"):
            value = getattr(self, name)
            if value is not None and self.memory is not None and value > self.memory:
                raise ValueError(f"{name} ({value} bytes) is above memory ({self.memory} "
                                 f"bytes): lower {name} or raise memory")
        return self


# --- containment: secrets, volumes, what an agent needs ------------------------------------

SECRET_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$"


class SecretSource(Strict):
    """Where a secret's value comes from (exactly one source); read when an instance starts."""

    environment: str | None = None  # a variable of corral's environment at `corral up`
    file: str | None = None  # a file (relative to the project dir)
    env_file: str | None = None  # a .env file (relative to the project dir)...
    key: str | None = None  # ...and the variable in it (default: the secret's name)
    command: Command | None = None  # a command that prints the value (a password manager's CLI)
    timeout: Duration = 10.0  # for command

    @model_validator(mode="after")
    def _one_source(self) -> SecretSource:
        given = [k for k in ("environment", "file", "env_file", "command")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of environment, file, env_file, command"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.key is not None and self.env_file is None:
            raise ValueError("key goes with env_file")
        return self


class SecretUse(Strict):
    """A secret an agent gets: as a file (``/run/secrets/TARGET`` in a sandbox, else
    ``$CORRAL_SECRETS_DIR/TARGET``) or, with ``env``, as an environment variable."""

    source: str
    env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    target: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,128}$")

    @model_validator(mode="after")
    def _one_way(self) -> SecretUse:
        if self.env is not None and self.target is not None:
            raise ValueError("a secret goes either to env or to a file target, not both")
        return self


class Volume(Strict):
    """compose's ``SOURCE:TARGET[:ro]``: a host path (absolute once loaded), or a named volume
    kept in the state dir (``volumes/NAME``) across restarts and re-creation."""

    source: str
    target: str = Field(pattern=r"^/")  # where the agent sees it: an absolute path
    read_only: bool = False
    named: bool = False


class Needs(Strict):
    """Facts ``corral recommend`` weighs (it cannot see them in the command)."""

    system_packages: list[str] = Field(default_factory=list)  # OS packages / shared libraries
    os: str | None = None  # another OS or distribution, e.g. "centos:7"
    kernel: bool = False  # kernel modules, a custom kernel, eBPF
    gpu: bool = False
    internet_facing: bool = False  # reachable from outside


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


class MetricsConfig(Strict):
    port: Port | None = None
    host: str = "127.0.0.1"


class LogsConfig(Strict):
    max_size: Size = 16 * 1024 * 1024  # rotate an agent's log file past this size
    keep: Keep = 5  # rotated files kept per agent
    max_age: Duration | None = None  # delete rotated files older than this


class Manifest(Strict):
    version: Literal[1] = 1
    name: str = Field(pattern=AGENT_NAME)
    project_dir: str = "."
    state_dir: str = ".corral"
    metrics: MetricsConfig = MetricsConfig()
    logs: LogsConfig = LogsConfig()
    agents: dict[str, Agent] = Field(default_factory=dict)
    secrets: dict[Annotated[str, Field(pattern=SECRET_NAME)], SecretSource] = Field(
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

