"""The manifest as the daemon holds it: frozen, slotted dataclasses from the standard library.

The pydantic models in ``model.py`` validate a manifest and normalize its shortcuts; that runs
in the CLI. The daemon only ever receives the normalized form, so it needs no validation
library at all: importing pydantic and building the models' schemas would cost it ~10 MB of
resident memory for the life of the fleet (benchmark S2). These classes mirror the models
field for field, in the same order, with the same names (``agent.class_``,
``agent.restart.backoff.initial``), so runtime code reads the same either way; a unit test
pins that the two never drift. The ranges of the numbers are declared here only (the
``rules.Within`` markers of the named types below), and the models take them from here. A
driver's block is not a field here: each driver declares
its own record (``drivers.registry``), and an agent holds the decoded blocks in ``options``.
``decode.py`` turns the normalized JSON into these, strictly. Keyword-only, so the fields
keep the models' order (the spec hash serializes them in that order) whatever has a default.
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal

from corral.lean.record import Record, record
from corral.manifest import bounds
from corral.manifest.bounds import Range
from corral.manifest.rules import Before, Blocks, Duration, Size, Within
from corral.manifest.units import parse_size

AgentClass = Literal["compute", "io", "service", "ai"]
RestartName = Literal["no", "on-failure", "always", "unless-stopped"]
Condition = Literal["started", "healthy", "completed", "completed_successfully", "log_ready"]
ProbeAction = Literal["none", "restart", "stop", "kill"]

AGENT_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# none | host | loopback:NAME (sandboxed agents naming one loopback share it, nothing else)
NETWORK = r"^(none|host|loopback:[a-z0-9][a-z0-9_.-]{0,62})$"
LOOPBACK = "loopback:"
USER = r"^([0-9]{1,10}|[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?)$"  # a uid or a user name
PROBE_KINDS = ("exec", "http", "tcp", "log_line")


# The range of every number, said once, here: the daemon's decoder checks these markers, the
# CLI's validation and ``corral schema`` read them through pydantic (``rules.Within``).
Port = Annotated[int, Within(bounds.PORT)]
Status = Annotated[int, Within(Range(100, 599))]
Threshold = Annotated[int, Within(Range(1, bounds.MAX_THRESHOLD))]
Factor = Annotated[float, Within(Range(1.0, bounds.MAX_FACTOR))]
Restarts = Annotated[int, Within(Range(0, bounds.MAX_RESTARTS))]
Cpus = Annotated[float, Within(Range(0, bounds.MAX_CPUS, low_open=True))]
Memory = Annotated[int, Within(Range(1, bounds.MAX_SIZE)), Before(parse_size)]  # not 0 bytes
Pids = Annotated[int, Within(Range(1, bounds.MAX_PIDS))]
Replicas = Annotated[int, Within(Range(0, bounds.MAX_REPLICAS))]
Keep = Annotated[int, Within(Range(0, bounds.MAX_KEEP))]


def _ok_statuses() -> list[int]:
    return list(range(200, 400))


# --- probes -------------------------------------------------------------------------------


@record(kw_only=True)
class ExecCheck(Record):
    command: list[str]


@record(kw_only=True)
class HttpCheck(Record):
    port: Port
    host: str = "127.0.0.1"
    path: str = "/"
    scheme: Literal["http", "https"] = "http"
    status: list[Status] = field(default_factory=_ok_statuses)


@record(kw_only=True)
class TcpCheck(Record):
    port: Port
    host: str = "127.0.0.1"


@record(kw_only=True)
class LogLineCheck(Record):
    pattern: str


@record(kw_only=True)
class Probe(Record):
    exec: ExecCheck | None = None
    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    log_line: LogLineCheck | None = None
    initial_delay: Duration = 0.0
    period: Duration = 10.0
    timeout: Duration = 1.0
    success_threshold: Threshold = 1
    failure_threshold: Threshold = 3
    action: ProbeAction | None = None

    @property
    def kind(self) -> str:
        for k in PROBE_KINDS:
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated probe has a kind")


# --- restart and stop ---------------------------------------------------------------------


@record(kw_only=True)
class Backoff(Record):
    initial: Duration = 1.0
    factor: Factor = 1.5
    max: Duration = 15.0
    reset_after: Duration = 30.0


@record(kw_only=True)
class RestartPolicy(Record):
    policy: RestartName = "on-failure"
    max_restarts: Restarts | None = None
    window: Duration = 60.0
    backoff: Backoff = Backoff()


@record(kw_only=True)
class StopPolicy(Record):
    signal: str = "SIGTERM"
    timeout: Duration = 10.0


# --- dependencies and environment ---------------------------------------------------------


@record(kw_only=True)
class Dependency(Record):
    condition: Condition = "started"
    required: bool = True
    restart: bool = False


@record(kw_only=True)
class EnvFile(Record):
    path: str
    required: bool = True


@record(kw_only=True)
class Resources(Record):
    cpus: Cpus | None = None
    memory: Memory | None = None
    memory_reservation: Memory | None = None
    memory_high: Memory | None = None
    pids: Pids | None = None


# --- containment: secrets, volumes, what an agent needs ------------------------------------


@record(kw_only=True)
class SecretSource(Record):
    environment: str | None = None
    file: str | None = None
    env_file: str | None = None
    key: str | None = None
    command: list[str] | None = None
    timeout: Duration = 10.0


@record(kw_only=True)
class SecretUse(Record):
    source: str
    env: str | None = None
    target: str | None = None


@record(kw_only=True)
class Volume(Record):
    source: str
    target: str
    read_only: bool = False
    named: bool = False


@record(kw_only=True)
class Needs(Record):
    system_packages: list[str] = field(default_factory=list)
    os: str | None = None
    kernel: bool = False
    gpu: bool = False
    internet_facing: bool = False


# --- agent and manifest -------------------------------------------------------------------


@record(kw_only=True)
class Agent(Record):
    description: str = ""
    class_: AgentClass = "io"
    isolation: str = "process"
    command: list[str]
    shell: bool = False
    workdir: str = "."
    env: dict[str, str] = field(default_factory=dict)
    env_file: list[EnvFile] = field(default_factory=list)
    inherit_env: list[str] = field(default_factory=list)
    replicas: Replicas = 1
    depends_on: dict[str, Dependency] = field(default_factory=dict)
    readiness: Probe | None = None
    liveness: Probe | None = None
    ready_log_line: str | None = None
    restart: RestartPolicy = RestartPolicy()
    stop: StopPolicy = StopPolicy()
    # the drivers' blocks (``venv:``, ``container:``, ``ray:``...), each decoded with the
    # record its driver declares (``drivers.registry.blocks``); written as agent keys
    options: Annotated[dict[str, Any], Blocks()] = field(default_factory=dict)
    resources: Resources = Resources()
    labels: dict[str, str] = field(default_factory=dict)
    trust: Literal["trusted", "untrusted"] = "trusted"
    user: str | None = None  # a name or a uid (corral.ownership.identity)
    network: str | None = None
    volumes: list[Volume] = field(default_factory=list)
    secrets: list[SecretUse] = field(default_factory=list)
    needs: Needs = Needs()

    @property
    def argv(self) -> list[str]:
        """What the driver executes."""
        if self.shell:
            return ["/bin/sh", "-c", " ".join(self.command)]
        return list(self.command)


@record(kw_only=True)
class MetricsConfig(Record):
    port: Port | None = None
    host: str = "127.0.0.1"


@record(kw_only=True)
class LogsConfig(Record):
    max_size: Size = 16 * 1024 * 1024
    keep: Keep = 5
    max_age: Duration | None = None


@record(kw_only=True)
class Manifest(Record):
    version: Literal[1] = 1
    name: str
    project_dir: str = "."
    state_dir: str = ".corral"
    metrics: MetricsConfig = MetricsConfig()
    logs: LogsConfig = LogsConfig()
    agents: dict[str, Agent] = field(default_factory=dict)
    secrets: dict[str, SecretSource] = field(default_factory=dict)
    inherit_env: list[str] = field(default_factory=list)


# YAML keys that are Python keywords are spelled with a trailing underscore in the classes.
ALIASES = {"class_": "class"}


def loopback_group(network: str | None) -> str | None:
    """The shared loopback a ``network: loopback:NAME`` agent joins; None for other modes."""
    if network is not None and network.startswith(LOOPBACK):
        return network[len(LOOPBACK):]
    return None


def instance_name(agent: str, index: int) -> str:
    """Instances are ``AGENT.N`` (N from 1): '.' never occurs in agent names."""
    return f"{agent}.{index}"
