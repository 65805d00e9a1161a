"""The OpenAPI description of the daemon's API (served at /openapi.json), and the one source
of what a request may carry: ``BODIES`` and ``PARAMETERS`` are both what the document shows
and what ``api.validate`` checks every request against before a handler runs.

Bounds are part of the contract: ``replicas`` up to ``MAX_REPLICAS`` (a fleet of more than
ten thousand instances of one agent is a typo, and each is a task, a log and processes),
waits up to ``MAX_WAIT`` seconds, names shaped as agents (``AGENT_NAME``) or instances
(``AGENT.N``), at most ``MAX_NAMES`` of them.
"""

from __future__ import annotations

from typing import Any

from corral import __version__
from corral.logs.records import LEVELS
from corral.manifest.bounds import MAX_REPLICAS
from corral.manifest.spec import AGENT_NAME
from corral.runtime.state import State

MAX_WAIT = 86_400  # seconds
MAX_NAMES = 10_000
INSTANCE_NAME = AGENT_NAME[:-1] + r"\.[1-9][0-9]{0,4}$"
NAME_OR_INSTANCE = AGENT_NAME[:-1] + r"(\.[1-9][0-9]{0,4})?$"

_AGENT: dict[str, Any] = {"type": "string", "pattern": AGENT_NAME}
_NAMES_PROP: dict[str, Any] = {"names": {
    "type": ["array", "null"], "maxItems": MAX_NAMES,
    "items": {"type": "string", "pattern": NAME_OR_INSTANCE},
    "description": "agents or instances (AGENT.N); all when absent, null or empty"}}
_SECONDS: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": MAX_WAIT}


def _body(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


_STARTING = _body({**_NAMES_PROP, "wait": {
    **_SECONDS, "type": ["number", "null"],
    "description": "seconds to wait until each instance is ready (healthy when it has a "
                   "readiness probe, else running; completed for a one-shot) or failed to "
                   "be; the reply then also has settled, ready and the instances' rows"}})

# (method, path) -> the JSON body's schema; a route not named here takes no body
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/apply"): _body({
        "manifest": {"type": "object",
                     "description": "the normalized manifest (checked field by field)"},
        "secret_env": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "values of the environment variables secrets read"},
        "only": {"type": ["array", "null"], "maxItems": MAX_NAMES, "items": _AGENT,
                 "description": "just these agents and what they depend on (all when "
                                "absent or null); the others are left as they are"},
        "no_deps": {"type": "boolean", "default": False,
                    "description": "with only: not what they depend on"},
        "recreate": {"type": "boolean", "default": False,
                     "description": "restart the instances even if their spec did not "
                                    "change"},
    }, "manifest"),
    ("POST", "/v1/wait"): _body({"timeout": _SECONDS, **_NAMES_PROP, "ready": {
        "type": "boolean", "default": False,
        "description": "wait until each instance is ready or failed to be, not only until "
                       "it left the start-up states; the reply then also has ready"}}),
    ("POST", "/v1/down"): _body({}),
    ("POST", "/v1/start"): _STARTING,
    ("POST", "/v1/stop"): _body(_NAMES_PROP),
    ("POST", "/v1/rm"): _body({"names": {
        **_NAMES_PROP["names"], "type": "array",
        "description": "agents or instances (AGENT.N); at least one"}}, "names"),
    ("POST", "/v1/restart"): _STARTING,
    ("POST", "/v1/scale"): _body({
        "agent": _AGENT,
        "replicas": {"type": "integer", "minimum": 0, "maximum": MAX_REPLICAS}},
        "agent", "replicas"),
    ("POST", "/v1/shutdown"): _body({"stop_fleet": {"type": "boolean", "default": True}}),
    ("POST", "/v1/dashboard"): _body({"port": {
        "type": ["integer", "null"], "minimum": 1, "maximum": 65535,
        "description": "the port to serve it on, if it is not served yet (default: the "
                       "manifest's dashboard.port, else one the system picks)"}}),
}


def _param(name: str, schema: dict[str, Any], desc: str,
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": desc}


_FILTERS = [
    # at most 100 agents: the request line stays within what the HTTP parser takes (16 KiB)
    _param("agent", {"type": "array", "items": _AGENT, "maxItems": 100},
           "only these agents (repeat the parameter); all when absent"),
    _param("instance", {"type": "array", "items": {"type": "string", "pattern": INSTANCE_NAME},
                        "maxItems": 100},
           "of its agent, only this instance (repeat the parameter); its agent is named too"),
    _param("grep", {"type": "string", "format": "regex", "maxLength": 4096},
           "only records whose message matches this regular expression (Python syntax)"),
    _param("level", {"type": "string", "enum": list(LEVELS)}, "this level and above"),
]
_SINCE = _param("since", {"type": "string", "minLength": 1, "maxLength": 64},
                "a duration ago (10m, 1h30m), an ISO-8601 time or unix seconds")
_UNTIL = _param("until", {"type": "string", "minLength": 1, "maxLength": 64},
                "records up to then: the forms of since")
_TAIL = _param("tail", {"type": "integer", "minimum": 0, "maximum": 10_000_000},
               "only the last N matching records of each agent")
_RUN = _param("run", {"type": "integer", "minimum": 1, "maximum": 2**53},
               "only the records of this run of a scheduled agent")
_LOGS = _param("logs", {"type": "string", "enum": ["0", "1"]}, "1: log records too")

# (method, path) -> its query parameters; a route not named here takes none
PARAMETERS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("GET", "/v1/exec"): [_param("agent", _AGENT, "the agent", required=True)],
    ("GET", "/v1/logs"): [*_FILTERS, _SINCE, _UNTIL, _TAIL, _RUN],
    ("GET", "/v1/events"): [_LOGS, *_FILTERS, _RUN, _param(
        "journal", {"type": "string", "enum": ["0", "1"]},
        "1: the kept events too, as they are kept (what /v1/journal lists)")],
    ("GET", "/v1/journal"): [_FILTERS[0], _param(
        "tail", {"type": "integer", "minimum": 0, "maximum": 10_000_000},
        "only the last N events")],
}

_ERROR = {"description": "a problem, with the fix",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_BAD = {"400": {**_ERROR, "description": "the request does not match this description"}}
_NOT_FOUND = {"404": {**_ERROR, "description": "no agent or instance of that name"}}
_LIST = {"type": "array", "items": {"type": "string"}}
_INSTANCES = {"type": "array", "items": {"$ref": "#/components/schemas/Instance"}}
_REPORT = {"type": "object", "properties": {k: _LIST for k in
                                            ("started", "recreated", "removed", "unchanged")}}


def _json(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": desc,
            "content": {"application/json": {"schema": schema or {"type": "object"}}}}


def _control(key: str) -> dict[str, Any]:
    return {"type": "object", "required": [key], "properties": {
        key: _LIST, "settled": {"type": "boolean"}, "ready": _LIST,
        "instances": _INSTANCES}}


def _op(method: str, path: str, summary: str, reply: dict[str, Any],
        *errors: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": reply}}
    body = BODIES.get((method.upper(), path))
    if body is not None:
        op["requestBody"] = {"required": False,
                             "content": {"application/json": {"schema": body}}}
    params = PARAMETERS.get((method.upper(), path))
    if params:
        op["parameters"] = params
    if body is not None or params:
        op["responses"].update(_BAD)
    for more in errors:
        op["responses"].update(more)
    return {method: op}


def _post(path: str, summary: str, reply: dict[str, Any], *errors: dict[str, Any]
          ) -> dict[str, Any]:
    return _op("post", path, summary, reply, *errors)


def spec() -> dict[str, Any]:
    invalid = {"422": {**_ERROR, "description": "the manifest is not valid"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "corral daemon API", "version": __version__,
                 "description": "HTTP over the project's Unix socket (mode 0600); the "
                                "web dashboard's port on 127.0.0.1 passes the views' routes "
                                "to a bearer of its token or a session (docs/dashboard.md). "
                                "Every request is checked against this document: anything "
                                "else is answered 400 with a message and its fix."},
        "paths": {
            "/v1/status": _op("get", "/v1/status", "the fleet's instances", _json(
                "status", {"type": "object", "properties": {
                    "project": {"type": ["string", "null"]},
                    "project_dir": {"type": ["string", "null"]},
                    "daemon": {"type": "object"}, "instances": _INSTANCES,
                    "agents": {"type": "object", "additionalProperties": {
                        "type": "object", "properties": {
                            "replicas": {"type": "integer"}, "class": {"type": "string"},
                            "depends_on": {"type": "object", "additionalProperties": {
                                "type": "string"},
                                "description": "agent -> condition"}}},
                        "description": "each agent's replicas, class and dependencies"}}})),
            "/v1/runs": _op("get", "/v1/runs", "the scheduled agents' runs, oldest first",
                            _json("runs", {"type": "object", "properties": {
                                "runs": {"type": "array",
                                         "items": {"$ref": "#/components/schemas/Run"}}}})),
            "/v1/apply": _post("/v1/apply", "reconcile the fleet with a normalized manifest",
                               _json("what was started, recreated, removed, left unchanged",
                                     _REPORT), invalid),
            "/v1/wait": _post("/v1/wait", "wait until instances leave the start-up states "
                              "(with ready: until each is ready or failed to be)",
                              _json("settled flag, instances (and the ready ones)", {
                                  "type": "object", "properties": {
                                      "settled": {"type": "boolean"}, "ready": _LIST,
                                      "instances": _INSTANCES}}), _NOT_FOUND),
            "/v1/down": _post("/v1/down", "stop every instance in reverse dependency order",
                              _json("stopped instances", _control("stopped"))),
            "/v1/start": _post("/v1/start", "start agents or instances",
                               _json("started instances", _control("started")), _NOT_FOUND),
            "/v1/stop": _post("/v1/stop", "stop agents or instances",
                              _json("stopped instances", _control("stopped")), _NOT_FOUND),
            "/v1/rm": _post("/v1/rm", "stop agents or instances and forget them (their "
                            "state; the next up creates them again)",
                            _json("removed instances", _control("removed")), _NOT_FOUND),
            "/v1/restart": _post("/v1/restart", "restart agents or instances",
                                 _json("restarted instances", _control("restarted")),
                                 _NOT_FOUND),
            "/v1/scale": _post("/v1/scale", "set an agent's replicas",
                               _json("what the reconcile did", _REPORT), _NOT_FOUND),
            "/v1/shutdown": _post("/v1/shutdown", "stop the daemon (and by default the fleet)",
                                  _json("stopped instances", _control("stopped"))),
            "/v1/exec": _op("get", "/v1/exec", "an agent's environment and workdir", _json(
                "env and cwd", {"type": "object", "properties": {
                    "env": {"type": "object", "additionalProperties": {"type": "string"}},
                    "cwd": {"type": ["string", "null"]}}}), _NOT_FOUND),
            "/v1/logs": _op("get", "/v1/logs", "stored log records, oldest first (JSON lines)",
                            {"description": "records",
                             "content": {"application/x-ndjson": {}}}, _NOT_FOUND),
            "/v1/events": _op("get", "/v1/events",
                              "server-sent events: state changes; log records with logs=1; "
                              "kept events with journal=1",
                              {"description": "event stream",
                               "content": {"text/event-stream": {}}}, _NOT_FOUND),
            "/v1/journal": _op("get", "/v1/journal",
                               "kept events (state changes, restarts and why, probe "
                               "failures, OOMs, hook runs, log forwarding's sinks down, up "
                               "or full: forward_*), oldest first (JSON lines)",
                               {"description": "events",
                                "content": {"application/x-ndjson": {}}}, _NOT_FOUND),
            "/v1/usage": _op("get", "/v1/usage", "each running instance's CPU seconds and "
                             "resident bytes now (what /metrics shows of them, without "
                             "scraping the agents)", _json("usage", {
                                 "type": "object", "properties": {
                                     "time": {"type": "number"},
                                     "instances": {"type": "object", "additionalProperties": {
                                         "type": "object", "properties": {
                                             "cpu_seconds": {"type": "number"},
                                             "rss_bytes": {"type": "integer"}}}}}})),
            "/v1/dashboard": _post("/v1/dashboard", "serve the web dashboard on 127.0.0.1 "
                                   "(if not yet) and make a one-time link to it",
                                   _json("the dashboard's address and a one-time link", {
                                       "type": "object", "properties": {
                                           "url": {"type": "string"},
                                           "port": {"type": "integer"},
                                           "link": {"type": "string"},
                                           "expires_in": {"type": "number"}}})),
            "/": _op("get", "/", "the web dashboard's page", {
                "description": "HTML", "content": {"text/html": {}}}),
            "/assets/{name}": {"get": {
                "summary": "the web dashboard's scripts and stylesheet",
                "parameters": [{"name": "name", "in": "path", "required": True,
                                "schema": {"type": "string",
                                           "pattern": r"^[a-z][a-z0-9_-]*\.(js|css|html)$"}}],
                "responses": {"200": {"description": "the file",
                                      "content": {"text/javascript": {}, "text/css": {}}},
                              **_NOT_FOUND}}},
            "/metrics": _op("get", "/metrics", "Prometheus metrics", {
                "description": "text exposition format", "content": {"text/plain": {}}}),
            "/openapi.json": _op("get", "/openapi.json", "this document",
                                 _json("OpenAPI 3.1")),
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"}, "fix": {"type": "string"},
                "problems": {"type": "array", "items": {"type": "string"}}}},
            "Instance": {"type": "object", "properties": {
                "name": {"type": "string"}, "agent": {"type": "string"},
                "index": {"type": "integer"},
                "state": {"enum": [s.value for s in State]},
                "health": {"enum": ["none", "unknown", "healthy", "unhealthy"]},
                "pid": {"type": ["integer", "null"]},
                "started_at": {"type": ["number", "null"]},
                "uptime": {"type": ["number", "null"]},
                "restarts": {"type": "integer"}, "exit_code": {"type": ["integer", "null"]},
                "exit_signal": {"type": ["integer", "null"]}, "oom_killed": {"type": "boolean"},
                "reason": {"type": "string"}, "limits": {"type": ["string", "null"]},
                "node_ip": {"type": ["string", "null"],
                            "description": "the cluster node's address (placement)"},
                "node": {"type": ["string", "null"], "description": "the cluster node's id"},
                "isolation": {"type": "string"},
                "ports": {"type": "array", "items": {"type": "string"},
                          "description": "published HOST->INSIDE, or the probed ports"},
                "schedule": {"type": ["object", "null"], "properties": {
                    "last_run": {"oneOf": [{"type": "null"},
                                           {"$ref": "#/components/schemas/Run"}]},
                    "next_run": {"type": ["number", "null"]},
                    "active": {"type": "boolean"}}},
                "artifacts": {"type": ["object", "null"],
                              "description": "its last upload of artifacts: (this daemon's)",
                              "properties": {
                                  "time": {"type": "number"}, "ok": {"type": "boolean"},
                                  "to": {"type": "string"}, "why": {"type": "string"},
                                  "files": {"type": ["integer", "null"]},
                                  "bytes": {"type": ["integer", "null"]},
                                  "unchanged": {"type": ["integer", "null"]},
                                  "reason": {"type": "string"}}}}},
            "Run": {"type": "object", "properties": {
                "instance": {"type": "string"}, "agent": {"type": "string"},
                "run": {"type": "integer"}, "trigger": {"type": "string"},
                "started_at": {"type": "number"}, "ended_at": {"type": ["number", "null"]},
                "exit_code": {"type": ["integer", "null"]}, "status": {"type": "string"}}},
        }},
    }
