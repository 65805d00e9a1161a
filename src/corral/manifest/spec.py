"""The manifest, declared once: frozen, slotted records from the standard library.

The daemon holds these and decodes them (``decode.py``) without any validation library:
importing pydantic and building schemas would cost it ~10 MB of resident memory for the life
of the fleet (benchmark S2). The CLI validates with pydantic over these very records
(``validation.py``), and ``corral schema`` is pydantic's schema of them: their rules are
``Annotated`` markers on the fields (``rules``: ``Within`` for a range, ``Pattern``,
``Problem``, ``Before`` naming a ``normalize`` shortcut, ``After``) and a record's
``__rules__`` (``rules.Whole``: a shortcut for the whole mapping, a check over its fields,
the agent's driver blocks), which pydantic reads through hooks and the decoder reads as data.
A driver's block is not a field here: each driver declares its own record
(``drivers.registry``), and an agent holds the decoded blocks in ``options``. Keyword-only,
so the fields keep their order (the spec hash serializes them in that order).
"""

from __future__ import annotations

import re
from dataclasses import field
from typing import Annotated, Any, Literal

from corral.lean.record import Record, record
from corral.manifest import bounds
from corral.manifest.bounds import Range
from corral.manifest.cloud import (
    EVENT_KINDS,
    SESSION,
    SPOOL,
    event_kind_problem,
    publish_problem,
    queue_problem,
    role_problem,
    s3_url_problem,
    topic_problem,
    transfer_path_problem,
    when_problem,
)
from corral.manifest.rules import (
    After,
    Before,
    Blocks,
    Core,
    Duration,
    Length,
    Pattern,
    Problem,
    Size,
    Whole,
    Within,
)
from corral.manifest.timetable import cron_problem, timezone_problem
from corral.manifest.units import parse_duration, parse_size

AgentClass = Literal["compute", "io", "service", "ai"]
RestartName = Literal["no", "on-failure", "always", "unless-stopped"]
Overlap = Literal["skip", "queue", "replace"]
Condition = Literal["started", "healthy", "completed", "completed_successfully", "log_ready"]
ProbeAction = Literal["none", "restart", "stop", "kill"]

# YAML keys that are Python keywords are spelled with a trailing underscore in the classes.
ALIASES = {"class_": "class", "from_": "from"}
AGENT_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# none | host | loopback:NAME (sandboxed agents naming one loopback share it, nothing else)
NETWORK = r"^(none|host|loopback:[a-z0-9][a-z0-9_.-]{0,62})$"
LOOPBACK = "loopback:"
USER = bounds.USER  # a uid or a user name
PROBE_KINDS = bounds.PROBE_KINDS
SECRET_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$"


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
Gpus = Annotated[float, Within(Range(0, bounds.MAX_GPUS))]
Replicas = Annotated[int, Within(Range(0, bounds.MAX_REPLICAS))]
Keep = Annotated[int, Within(Range(0, bounds.MAX_KEEP))]
# a program and its arguments: a string is split like a shell would (the CLI's shortcut)
Command = Annotated[list[str], Length(1), Before("command_list")]


def _ok_statuses() -> list[int]:
    return list(range(200, 400))


# --- probes -------------------------------------------------------------------------------


@record(kw_only=True)
class ExecCheck(Core, Record):
    command: Command


@record(kw_only=True)
class HttpCheck(Core, Record):
    port: Port
    host: str = "127.0.0.1"
    path: str = "/"
    scheme: Literal["http", "https"] = "http"
    status: Annotated[list[Status], Length(1)] = field(default_factory=_ok_statuses)


@record(kw_only=True)
class TcpCheck(Core, Record):
    port: Port
    host: str = "127.0.0.1"


@record(kw_only=True)
class LogLineCheck(Core, Record):
    pattern: Annotated[str, Before("regex")]


def heartbeat_file_problem(path: str) -> str | None:
    """A heartbeat file is the agent's: named inside its workdir, never outside it."""
    if not path or path.startswith("/") or ".." in path.split("/"):
        return (f"heartbeat file {path[:60]!r} must be a path relative to the agent's workdir "
                "(no leading '/', no '..')")
    return None


@record(kw_only=True)
class Probe(Core, Record):
    """One health probe, Kubernetes semantics; exactly one of exec/http/tcp/log_line, or
    corral's two for the alive-but-stuck: ``silence`` (no output on stdout or stderr for that
    long) and ``heartbeat`` (a file the agent touches)."""

    __rules__ = Whole(before="probe_shortcuts", after="one_probe_kind")
    exec: ExecCheck | None = None
    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    log_line: LogLineCheck | None = None
    silence: Duration | None = None
    # a file the agent touches (relative to its workdir), older than ``within`` (60 s) fails
    heartbeat: Annotated[str, Problem(heartbeat_file_problem)] | None = None
    within: Duration | None = None
    initial_delay: Duration = 0.0
    period: Duration = 10.0
    timeout: Duration = 1.0
    success_threshold: Threshold = 1
    failure_threshold: Threshold = 3
    # None means: the default for the probe's role (liveness: restart, readiness: none).
    action: ProbeAction | None = None

    @property
    def heartbeat_within(self) -> float:
        return 60.0 if self.within is None else self.within

    @property
    def kind(self) -> str:
        for k in PROBE_KINDS:
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated probe has a kind")


# --- restart and stop ---------------------------------------------------------------------


@record(kw_only=True)
class Backoff(Core, Record):
    """Delay before restart number n is ``initial * factor**(n-1)``, capped at ``max``; the
    count resets once the instance has stayed up for ``reset_after`` (PM2's manners)."""

    initial: Duration = 1.0
    factor: Factor = 1.5
    max: Duration = 15.0
    reset_after: Duration = 30.0


@record(kw_only=True)
class RestartPolicy(Core, Record):
    __rules__ = Whole(before="restart")

    policy: RestartName = "on-failure"
    max_restarts: Restarts | None = None  # None: unlimited
    window: Duration = 60.0  # max_restarts counts restarts within this sliding window
    backoff: Backoff = Backoff()


@record(kw_only=True)
class StopPolicy(Core, Record):
    signal: Annotated[str, Before("signal_name")] = "SIGTERM"
    timeout: Duration = 10.0


@record(kw_only=True)
class Schedule(Core, Record):
    """When the daemon runs the agent, each run a one-shot (systemd timers, cron): exactly
    one of ``cron`` (in ``timezone``; the host's local time without one) and ``every``.
    ``jitter``: a random delay in [0, jitter] before each scheduled run. ``catch_up``: a
    run missed while the daemon or the fleet was down is made once on its return (systemd's
    ``Persistent=``). ``overlap``: what a run that comes while the last one still goes does:
    ``skip`` it, ``queue`` it (at most one waits), or ``replace`` the running one."""

    __rules__ = Whole(after="one_schedule_kind")

    cron: Annotated[str, Problem(cron_problem)] | None = None
    every: Duration | None = None
    timezone: Annotated[str, Problem(timezone_problem)] | None = None
    jitter: Duration = 0.0
    catch_up: bool = False
    overlap: Overlap = "skip"
    run_on_start: bool = False


# --- dependencies and environment ---------------------------------------------------------


@record(kw_only=True)
class Dependency(Core, Record):
    condition: Condition = "started"
    required: bool = True  # compose: a missing/disabled optional dependency is skipped
    restart: bool = False  # compose: restart this agent when the dependency restarts


@record(kw_only=True)
class EnvFile(Core, Record):
    path: str
    required: bool = True


@record(kw_only=True)
class Resources(Core, Record):
    """Per-instance limits (compose names), enforced by ``limits.limiter`` through cgroups."""

    __rules__ = Whole(after="below_the_hard_limit")

    cpus: Cpus | None = None
    memory: Memory | None = None  # hard limit: past it the kernel OOM-kills
    memory_reservation: Memory | None = None  # soft: reclaimed first under pressure
    memory_high: Memory | None = None  # throttled past it (cgroup v2 only)
    pids: Pids | None = None
    # GPUs a cluster schedules it on (``placement:``; Ray's GPU resource); 0 is none
    gpus: Gpus | None = None


# --- containment: secrets, volumes, what an agent needs ------------------------------------


@record(kw_only=True)
class SecretSource(Core, Record):
    """Where a secret's value comes from (exactly one source); read when an instance starts."""

    __rules__ = Whole(after="one_secret_source")

    environment: str | None = None  # a variable of corral's environment at `corral up`
    file: str | None = None  # a file (relative to the project dir)
    env_file: str | None = None  # a .env file (relative to the project dir)...
    key: str | None = None  # ...and the variable in it (default: the secret's name)
    command: Command | None = None  # a command that prints the value (a password manager's)
    timeout: Duration = 10.0  # for command


@record(kw_only=True)
class SecretUse(Core, Record):
    """A secret an agent gets: as a file (``/run/secrets/TARGET`` in a sandbox, else
    ``$CORRAL_SECRETS_DIR/TARGET``) or, with ``env``, as an environment variable."""

    __rules__ = Whole(after="one_secret_way")

    source: str
    env: Annotated[str, Pattern(r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    target: Annotated[str, Pattern(r"^[A-Za-z0-9_.-]{1,128}$")] | None = None


@record(kw_only=True)
class Volume(Core, Record):
    """compose's ``SOURCE:TARGET[:ro]``: a host path (absolute once loaded), or a named volume
    kept in the state dir (``volumes/NAME``) across restarts and re-creation."""

    source: str
    target: Annotated[str, Pattern(r"^/")]  # where the agent sees it: an absolute path
    read_only: bool = False
    named: bool = False


@record(kw_only=True)
class Needs(Core, Record):
    """Facts ``corral recommend`` weighs (it cannot see them in the command)."""

    system_packages: list[str] = field(default_factory=list)  # OS packages / shared libraries
    os: str | None = None  # another OS or distribution, e.g. "centos:7"
    kernel: bool = False  # kernel modules, a custom kernel, eBPF
    gpu: bool = False
    internet_facing: bool = False  # reachable from outside


# --- hooks on events -----------------------------------------------------------------------


@record(kw_only=True)
class Hook(Core, Record):
    """A host command run on an event, as the supervisor's user, with the event as one JSON
    object on stdin; killed with its process group after ``timeout``."""

    __rules__ = Whole(before="hook_command")
    command: Command
    timeout: Duration = 30.0


# each event's commands: one command, or a list of them (a string is split like a shell would)
Hooks = Annotated[list[Hook], Before("hook_list")]


@record(kw_only=True)
class EventHooks(Core, Record):
    """``on:`` the events a hook may follow (PM2's and supervisord's event listeners)."""

    fatal: Hooks = field(default_factory=list)
    restart: Hooks = field(default_factory=list)
    oom: Hooks = field(default_factory=list)


# --- cloud identities (rules: ``manifest.cloud``) -------------------------------------------


CloudRole = Annotated[str, Problem(role_problem)]
# ``sqs:QUEUE`` (a name or a queue URL) or ``sns:TOPIC`` (a name or a topic ARN)
Publish = Annotated[str, Problem(publish_problem)]
Session = Annotated[float, Within(SESSION), Before(parse_duration)]


@record(kw_only=True)
class AwsCloud(Core, Record):
    """Where corral's own AWS identity comes from: a ``profile`` of the AWS config (SSO or a
    role are best; long-lived keys are flagged), and/or a ``role_arn`` corral assumes first;
    ``endpoint_url``: an AWS-compatible or local endpoint (and the agents' too).
    ``refresh_before``: how long before expiry corral replaces an agent's credentials
    (default: the shorter of 20 min and half their duration)."""

    region: str | None = None
    profile: str | None = None
    role_arn: CloudRole | None = None
    endpoint_url: Annotated[str, Pattern(r"^https?://[^\s]+$")] | None = None
    refresh_before: Duration | None = None
    # the role an agent with ``publishes:`` and no ``aws:`` assumes (default: role_arn),
    # narrowed by a session policy allowing those sends only
    publish_role: CloudRole | None = None


@record(kw_only=True)
class Cloud(Core, Record):
    aws: AwsCloud | None = None


@record(kw_only=True)
class FleetEvents(Core, Record):
    """``events:``: the fleet's lifecycle events as JSON messages to an SQS queue and/or an
    SNS topic (a name, or a queue URL / topic ARN), sent by the daemon with corral's own
    identity (``cloud.aws``); spooled on disk up to ``spool`` bytes while the endpoint is
    slow or down (``corral.cloud.events``)."""

    sqs: Annotated[str, Problem(queue_problem)] | None = None
    sns: Annotated[str, Problem(topic_problem)] | None = None
    kinds: list[Annotated[str, Problem(event_kind_problem)]] = field(
        default_factory=lambda: list(EVENT_KINDS))
    spool: Annotated[int, Within(SPOOL), Before(parse_size)] = 16 * 1024 * 1024


@record(kw_only=True)
class AwsAccess(Core, Record):
    """An agent's AWS identity: temporary credentials of ``role``, narrowed by ``policy``."""

    __rules__ = Whole(after="cloud.access_rules")

    role: CloudRole
    policy: dict[str, Any] | None = None  # checked by access_rules, decode.cloud_problem
    duration: Session = 3600.0
    session_name: Annotated[str, Pattern(r"^[\w+=,.@-]{2,64}$")] | None = None
    # where it may publish (the agent's ``publishes:``, copied here by ``fleet_rules``): the
    # session policy gains sqs:SendMessage / sns:Publish on each, and nothing else of them
    publishes: list[Publish] = field(default_factory=list)


S3Url = Annotated[str, Problem(s3_url_problem)]


@record(kw_only=True)
class Artifacts(Core, Record):
    """What the daemon uploads from the agent's workdir, with the agent's own credentials:
    the files matching ``paths`` (globs, ``**`` for any depth), under ``to`` (``{instance}``
    and ``{agent}`` filled in), at each exit or ``every 5m`` while it runs (and at exit)."""

    to: S3Url
    paths: Annotated[list[Annotated[str, Problem(transfer_path_problem)]], Length(1)] = field(
        default_factory=lambda: ["**"])
    when: Annotated[str, Problem(when_problem)] = "exit"


@record(kw_only=True)
class Inputs(Core, Record):
    """What the daemon downloads before each start, with the agent's own credentials: the
    objects under ``from`` into ``to`` (relative to its workdir), only those that changed."""

    __pydantic_config__ = {"extra": "forbid", "populate_by_name": True,
                           "alias_generator": lambda name: ALIASES.get(name, name)}
    from_: S3Url
    to: Annotated[str, Problem(transfer_path_problem)] = "data"


# --- agent and manifest -------------------------------------------------------------------


NAME_RULE = "use lowercase letters, digits, '-' and '_', starting with a letter or digit"


def _fits(regex: str, value: str) -> bool:
    # fullmatch: a pattern's final $ also matches before a trailing newline in re.match
    return re.fullmatch(regex, value) is not None


def _bad_name(name: str) -> bool:
    return not _fits(AGENT_NAME, name)


def agent_name_problem(name: str) -> str | None:
    """Agent names become file names under the state dir (and ``AGENT.N`` instance names);
    a key of ``agents``, so the path names the agent."""
    return f"agent name is not valid ({NAME_RULE})" if _bad_name(name) else None


def project_name_problem(name: str) -> str | None:
    """The project's name prefixes container, network and unit names."""
    if not _bad_name(name):
        return None
    shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:37] + "..."
    return f"{shown} is not a valid name: {NAME_RULE}"


def network_problem(value: str) -> str | None:
    if not _fits(NETWORK, value):
        return (f"network {value[:40]!r} is not one of none, host, loopback:NAME (a loopback "
                "shared by the sandboxed agents naming it; NAME in lower case)")
    return None


# variables of the `corral` command's environment an agent gets (names or globs), repeats
# dropped; the fleet's list goes first into each agent's (``normalize.fleet_inherit_env``)
InheritNames = Annotated[list[str], After("inherit_names")]
AgentName = Annotated[str, Problem(agent_name_problem)]


@record(kw_only=True)
class Agent(Core, Record):
    # ``class`` is a Python keyword: the field is ``class_``, the key ``class`` (``ALIASES``)
    __pydantic_config__ = {"extra": "forbid", "populate_by_name": True,
                           "alias_generator": lambda name: ALIASES.get(name, name)}
    # a string command split like a shell would; each driver's block to the record it
    # declares (``blocks.validated``); user: and network: for the levels that have them
    __rules__ = Whole(before="agent_command", wrap="blocks.validated", after="agent_levels")

    description: str = ""
    class_: AgentClass = "io"
    isolation: str = "process"
    # left out only where the level runs a default of its own (a container's image CMD:
    # ``routes.runs_without_command``); the rule ``agent_levels`` says so otherwise
    command: Annotated[list[str], Before("command_list")] = field(default_factory=list)
    shell: bool = False
    workdir: str = "."
    env: Annotated[dict[str, str], Before("env")] = field(default_factory=dict)
    env_file: Annotated[list[EnvFile], Before("env_files")] = field(default_factory=list)
    inherit_env: InheritNames = field(default_factory=list)
    replicas: Replicas = 1
    depends_on: Annotated[dict[str, Dependency], Before("depends_on")] = field(
        default_factory=dict)
    readiness: Probe | None = None
    liveness: Probe | None = None
    ready_log_line: Annotated[str | None, Before("regex")] = None
    restart: RestartPolicy = RestartPolicy()
    stop: StopPolicy = StopPolicy()
    schedule: Schedule | None = None
    # the drivers' blocks (``venv:``, ``container:``, ``ray:``...), each decoded with the
    # record its driver declares (``drivers.registry.blocks``); written as agent keys
    options: Annotated[dict[str, Any], Blocks()] = field(default_factory=dict)
    resources: Resources = Resources()
    labels: dict[str, str] = field(default_factory=dict)
    trust: Literal["trusted", "untrusted"] = "trusted"
    # who it runs as on the host (process, venv, sandbox): a user name or a uid; see
    # ownership.identity for the defaults (a sandbox run by root: an unprivileged uid of its own)
    user: Annotated[Annotated[str, Pattern(USER)] | None, Before("user")] = None
    # sandbox and stronger; default none there. loopback:NAME: sandboxed agents naming the
    # same NAME share one loopback (and no other network); compose's internal network
    network: Annotated[str, Pattern(NETWORK), Problem(network_problem)] | None = None
    # the port it listens on (inside its container or guest), for the other agents'
    # CORRAL_ADDR_<AGENT> (``manifest.peers``); default: its first published or probed port
    port: Port | None = None
    # where it runs: this host (None, "local"), or a cluster a driver places agents on
    # ("ray"), with the top-level ``cluster.NAME`` block as its block's defaults
    placement: Annotated[str, Pattern(AGENT_NAME)] | None = None
    volumes: Annotated[list[Volume], Before("volume_entries")] = field(default_factory=list)
    secrets: Annotated[list[SecretUse], Before("secret_uses")] = field(default_factory=list)
    needs: Needs = Needs()
    on: EventHooks = EventHooks()
    # its own Prometheus exposition, scraped by the daemon with each scrape of corral's
    metrics: AgentMetrics | None = None
    # its AWS identity: temporary credentials of a role, narrowed by a session policy,
    # fetched from the daemon by its SDK (``corral.cloud``); without it, no AWS credentials
    aws: AwsAccess | None = None
    # the cloud data plane, moved by the daemon with the agent's own aws: credentials
    artifacts: Artifacts | None = None
    inputs: Inputs | None = None
    # queues and topics it may publish to: sqs:QUEUE, sns:TOPIC; it gets their URL/ARN in
    # CORRAL_SQS_<QUEUE> / CORRAL_SNS_<TOPIC> and credentials allowing only that send
    publishes: list[Publish] = field(default_factory=list)

    @property
    def driver(self) -> str:
        """The driver that runs it: its placement's (a cluster), else its isolation's."""
        return self.placement if self.placement not in (None, LOCAL) else self.isolation

    @property
    def argv(self) -> list[str]:
        """What the driver executes."""
        if self.shell:
            return ["/bin/sh", "-c", " ".join(self.command)]
        return list(self.command)


@record(kw_only=True)
class AgentMetrics(Core, Record):
    """Where an agent serves its own metrics: ``port`` as it listens (instance N at port +
    N - 1; a container's is reached at the port publishing it), ``path`` on it."""

    port: Port
    path: Annotated[str, Pattern(r"^/[^\s]*$")] = "/metrics"


@record(kw_only=True)
class MetricsConfig(Core, Record):
    port: Port | None = None
    host: str = "127.0.0.1"


# --- log forwarding (``logs.forward``: ``corral.logs.forward`` sends the stored records) ---

HTTP_URL = r"^https?://[^\s/?#]+(/[^\s]*)?$"
ADDRESS = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$"  # host:port, [v6]:port
Url = Annotated[str, Pattern(HTTP_URL)]
Address = Annotated[str, Pattern(ADDRESS)]
SINK_KINDS = ("otlp", "loki", "elasticsearch", "syslog", "fluent")
HeaderName = Annotated[str, Pattern(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")]
Headers = dict[HeaderName, str]
# header -> the name of a top-level secrets: entry whose value it is sent with (never stored,
# never printed: the daemon reads it and hands it to the forwarder in memory)
SecretHeaders = dict[HeaderName, Annotated[str, Pattern(SECRET_NAME)]]


@record(kw_only=True)
class OtlpSink(Core, Record):
    """OTLP/HTTP (protobuf): records POSTed to ``endpoint``/v1/logs (an endpoint already
    ending in /v1/logs is used as it is); ``traces: true`` also sends a span per agent
    start, stop, restart and probe verdict to /v1/traces."""

    endpoint: Url
    headers: Headers = field(default_factory=dict)
    secret_headers: SecretHeaders = field(default_factory=dict)
    traces: bool = False


@record(kw_only=True)
class LokiSink(Core, Record):
    """Loki's push API: ``url``/loki/api/v1/push; labels project, agent, instance, level and
    stream; a record's own fields as structured metadata. ``format``: ``protobuf`` (Loki's
    native push, snappy-compressed ``logproto.PushRequest``) or ``json``."""

    url: Url
    format: Literal["protobuf", "json"] = "protobuf"
    headers: Headers = field(default_factory=dict)
    secret_headers: SecretHeaders = field(default_factory=dict)


@record(kw_only=True)
class ElasticsearchSink(Core, Record):
    """Elasticsearch's bulk API (NDJSON ``create`` actions) at ``url``/_bulk, into
    ``index`` (an index or a data stream)."""

    url: Url
    index: Annotated[str, Pattern(r"^[a-z0-9][a-z0-9._+-]{0,254}$")] = "corral-logs"
    headers: Headers = field(default_factory=dict)
    secret_headers: SecretHeaders = field(default_factory=dict)


@record(kw_only=True)
class SyslogSink(Core, Record):
    """RFC 5424 messages to ``address`` (host:port): TCP with octet-counting framing
    (RFC 6587), or one message per UDP datagram."""

    address: Address
    format: Literal["rfc5424"] = "rfc5424"
    protocol: Literal["tcp", "udp"] = "tcp"
    facility: Annotated[int, Within(Range(0, 23))] = 16  # local0


@record(kw_only=True)
class FluentSink(Core, Record):
    """Fluentd's forward protocol (msgpack, Forward mode with acks) to ``address``; each
    record's tag is ``tag``.AGENT."""

    address: Address
    tag: Annotated[str, Pattern(r"^[A-Za-z0-9_.-]{1,128}$")] = "corral"


@record(kw_only=True)
class ForwardTarget(Core, Record):
    """One sink of ``logs.forward``: exactly one of otlp, loki, elasticsearch, syslog,
    fluent, and its queue: at most ``queue`` bytes of records wait on disk while it is
    down (past that, new records are dropped, counted and said in an event)."""

    __rules__ = Whole(after="one_sink_kind")
    otlp: OtlpSink | None = None
    loki: LokiSink | None = None
    elasticsearch: ElasticsearchSink | None = None
    syslog: SyslogSink | None = None
    fluent: FluentSink | None = None
    name: Annotated[str, Pattern(AGENT_NAME)] | None = None  # default: the kind (kind-2 ...)
    queue: Size = 256 * 1024 * 1024
    batch: Annotated[int, Within(Range(1, 100_000))] = 2000  # records per request at most

    @property
    def kind(self) -> str:
        return next(k for k in SINK_KINDS if getattr(self, k) is not None)


def sink_kind_problem(target: ForwardTarget) -> str | None:
    """A forward target names exactly one sink (the CLI's check and the daemon's)."""
    kinds = [k for k in SINK_KINDS if getattr(target, k) is not None]
    if len(kinds) != 1:
        return (f"a forward target needs exactly one of {', '.join(SINK_KINDS)} "
                f"(found: {', '.join(kinds) if kinds else 'none'})")
    return None


def sink_names(targets: list[ForwardTarget]) -> list[str]:
    """Each target's name: its own, else its kind, numbered from the second of a kind."""
    seen: dict[str, int] = {}
    out = []
    for t in targets:
        seen[t.kind] = seen.get(t.kind, 0) + 1
        out.append(t.name or (t.kind if seen[t.kind] == 1 else f"{t.kind}-{seen[t.kind]}"))
    return out


@record(kw_only=True)
class DashboardConfig(Core, Record):
    """The web dashboard: served by the daemon on 127.0.0.1 at ``port`` from the first
    ``up`` (``corral dashboard`` prints the one-time link that opens it)."""

    port: Port | None = None


@record(kw_only=True)
class LogsConfig(Core, Record):
    max_size: Size = 16 * 1024 * 1024  # rotate an agent's log file past this size
    keep: Keep = 5  # rotated files kept per agent
    max_age: Duration | None = None  # delete rotated files older than this
    # where the stored records are also sent (``corral.logs.forward``); none by default
    forward: list[ForwardTarget] = field(default_factory=list)


@record(kw_only=True)
class Manifest(Core, Record):
    __rules__ = Whole(before="fleet_inherit_env", after="fleet_rules")

    version: Literal[1] = 1
    name: Annotated[str, Pattern(AGENT_NAME), Problem(project_name_problem)]
    project_dir: str = "."
    state_dir: str = ".corral"
    metrics: MetricsConfig = MetricsConfig()
    dashboard: DashboardConfig = DashboardConfig()
    logs: LogsConfig = LogsConfig()
    agents: dict[AgentName, Agent] = field(default_factory=dict)
    secrets: dict[Annotated[str, Pattern(SECRET_NAME)], SecretSource] = field(
        default_factory=dict)
    inherit_env: InheritNames = field(default_factory=list)  # every agent's, before its own
    # the clusters agents are placed on (``placement: NAME``): each block the defaults of
    # the placed agents' own ``NAME:`` block (the loader merges them in)
    cluster: dict[Annotated[str, Pattern(AGENT_NAME)], dict[str, Any]] = field(
        default_factory=dict)
    # the cloud accounts corral reaches for its agents' identities (``aws:``)
    cloud: Cloud = Cloud()
    # the fleet's lifecycle events to SQS / SNS (``corral.cloud.events``)
    events: FleetEvents | None = None




LOCAL = "local"  # the placement of an agent run on this host


def loopback_group(network: str | None) -> str | None:
    """The shared loopback a ``network: loopback:NAME`` agent joins; None for other modes."""
    if network is not None and network.startswith(LOOPBACK):
        return network[len(LOOPBACK):]
    return None


def instance_name(agent: str, index: int) -> str:
    """Instances are ``AGENT.N`` (N from 1): '.' never occurs in agent names."""
    return f"{agent}.{index}"
