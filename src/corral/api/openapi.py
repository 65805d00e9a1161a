"""The OpenAPI description of the daemon's API (served at /openapi.json)."""

from __future__ import annotations

from typing import Any

from corral import __version__
from corral.runtime.state import State

_NAMES_PROP: dict[str, Any] = {"names": {
    "type": ["array", "null"], "items": {"type": "string"},
    "description": "agents or instances (AGENT.N); all when absent"}}
_NAMES: dict[str, Any] = {"type": "object", "properties": _NAMES_PROP}
_STARTING: dict[str, Any] = {"type": "object", "properties": {**_NAMES_PROP, "wait": {
    "type": ["number", "null"],
    "description": "seconds to wait until each instance runs or failed to; the reply then "
                   "also has settled and the instances' rows"}}}
_ERROR = {"description": "a problem, with the fix",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": desc,
            "content": {"application/json": {"schema": schema or {"type": "object"}}}}


def _post(summary: str, body: dict[str, Any], reply: str) -> dict[str, Any]:
    return {"post": {"summary": summary,
                     "requestBody": {"content": {"application/json": {"schema": body}}},
                     "responses": {"200": _json(reply), "400": _ERROR, "404": _ERROR}}}


def _query(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
            for n in names]


def spec() -> dict[str, Any]:
    instances = {"type": "array", "items": {"$ref": "#/components/schemas/Instance"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "corral daemon API", "version": __version__,
                 "description": "HTTP over the project's Unix socket (mode 0600)."},
        "paths": {
            "/v1/status": {"get": {"summary": "the fleet's instances", "responses": {
                "200": _json("status", {"type": "object", "properties": {
                    "project": {"type": ["string", "null"]},
                    "daemon": {"type": "object"}, "instances": instances}})}}},
            "/v1/apply": _post("reconcile the fleet with a normalized manifest",
                               {"type": "object", "required": ["manifest"],
                                "properties": {"manifest": {"type": "object"}}},
                               "what was started, recreated, removed, left unchanged"),
            "/v1/wait": _post("wait until instances leave the start-up states",
                              {"type": "object", "properties": {
                                  "timeout": {"type": "number"}, **_NAMES_PROP}},
                              "settled flag and instances"),
            "/v1/down": _post("stop every instance in reverse dependency order",
                              {"type": "object"}, "stopped instances"),
            "/v1/start": _post("start agents or instances", _STARTING, "started instances"),
            "/v1/stop": _post("stop agents or instances", _NAMES, "stopped instances"),
            "/v1/restart": _post("restart agents or instances", _STARTING,
                                 "restarted instances"),
            "/v1/scale": _post("set an agent's replicas",
                               {"type": "object", "required": ["agent", "replicas"],
                                "properties": {"agent": {"type": "string"},
                                               "replicas": {"type": "integer", "minimum": 0}}},
                               "what the reconcile did"),
            "/v1/shutdown": _post("stop the daemon (and by default the fleet)",
                                  {"type": "object", "properties": {
                                      "stop_fleet": {"type": "boolean", "default": True}}},
                                  "stopped instances"),
            "/v1/exec": {"get": {"summary": "an agent's environment and workdir",
                                 "parameters": _query("agent"),
                                 "responses": {"200": _json("env and cwd"), "404": _ERROR}}},
            "/v1/logs": {"get": {
                "summary": "stored log records, oldest first (JSON lines)",
                "parameters": _query("agent", "instance", "since", "grep", "level", "tail"),
                "responses": {"200": {"description": "records",
                                      "content": {"application/x-ndjson": {}}}}}},
            "/v1/events": {"get": {
                "summary": "server-sent events: state changes; log records with logs=1",
                "parameters": _query("logs", "agent", "instance", "grep", "level"),
                "responses": {"200": {"description": "event stream",
                                      "content": {"text/event-stream": {}}}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "text exposition format",
                        "content": {"text/plain": {}}}}}},
            "/openapi.json": {"get": {"summary": "this document",
                                      "responses": {"200": _json("OpenAPI 3.1")}}},
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
                "reason": {"type": "string"}, "limits": {"type": ["string", "null"]}}},
        }},
    }
