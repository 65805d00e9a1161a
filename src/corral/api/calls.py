"""The fleet protocol's operations over any transport (see ``api.protocol.Fleet``).

This module stays import-light: ``corral ps`` imports it on every poll.
"""

from __future__ import annotations

import json

from corral.errors import CorralError

TYPE_CHECKING = False  # not typing's: its import costs ~3 ms on every `corral ps` poll
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from corral.manifest import spec


class ApiError(CorralError):
    pass


def wire(manifest: dict[str, Any] | spec.Manifest) -> dict[str, Any]:
    """A manifest's JSON form (the YAML spelling, every default in), from a loaded one."""
    if isinstance(manifest, dict):
        return manifest
    from corral.manifest import decode

    out: dict[str, Any] = decode.dump(manifest)
    return out


CLOSED = ("the corral daemon closed the connection (did it die?)",
          "see the daemon log in the state dir, then 'corral up -d'")


def decode(status: int, content_type: str, payload: bytes) -> Any:
    """A reply's body, or the ``CorralError`` it carries (same exit codes at both ends)."""
    value = json.loads(payload) if payload and "json" in content_type else payload
    if status >= 400:
        if isinstance(value, dict) and "error" in value:
            err = ApiError(str(value["error"]), str(value.get("fix", "")))
            err.exit_code = 4 if status == 404 else 2 if status == 422 else 1
            raise err
        raise ApiError(f"the daemon answered {status}", "see the daemon log")
    return value


def stream_error(status: int, rest: bytes) -> ApiError:
    """The error a refused stream's whole body carries (what ``decode`` raises)."""
    try:
        decode(status, "application/json", rest)
    except ApiError as err:
        return err
    except ValueError:  # not JSON: a body of another server's
        pass
    return ApiError(f"the daemon answered {status}", "see the daemon log")


def _filter_pairs(filters: dict[str, Any]) -> list[tuple[str, str]]:
    """Query pairs of filters; a list (``instance``) repeats its parameter, None is left out."""
    return [(k, str(item)) for k, v in filters.items() if v is not None
            for item in (v if isinstance(v, list | tuple) else [v])]


def _query(pairs: list[tuple[str, str]]) -> str:
    from urllib.parse import urlencode

    return "?" + urlencode(pairs) if pairs else ""


class FleetCalls:
    """The protocol's operations over any transport: subclasses provide ``request`` (one JSON
    reply) and ``lines`` (a streamed reply, line by line)."""

    def request(self, method: str, path: str, body: Any = None,
                timeout: float | None = None) -> Any:
        raise NotImplementedError

    def lines(self, method: str, path: str, body: Any = None) -> Iterator[bytes]:
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        reply: dict[str, Any] = self.request("GET", "/v1/status")
        return reply

    def instances(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.status()["instances"]
        return rows

    def runs(self) -> list[dict[str, Any]]:
        """The scheduled agents' runs, oldest first: run number, trigger, start, end, exit
        code, status."""
        rows: list[dict[str, Any]] = self.request("GET", "/v1/runs")["runs"]
        return rows

    def apply(self, manifest: dict[str, Any] | spec.Manifest, timeout: float | None = None,
              secret_env: dict[str, str] | None = None, only: list[str] | None = None,
              no_deps: bool = False, recreate: bool = False) -> dict[str, list[str]]:
        """``manifest``: what ``manifest.loader.load`` returns, or its JSON form.
        ``secret_env``: the variables the manifest's ``environment:`` secrets and
        ``inherit_env`` read, from the caller's environment (``corral.environ.sent_by_cli``);
        kept in the daemon's memory only. ``only``: just these agents and (unless
        ``no_deps``) what they depend on; ``recreate``: restart them even if unchanged."""
        body: dict[str, Any] = {"manifest": wire(manifest)}
        if secret_env:
            body["secret_env"] = secret_env
        if only is not None:
            body["only"] = only
        if no_deps:
            body["no_deps"] = True
        if recreate:
            body["recreate"] = True
        report: dict[str, list[str]] = self.request("POST", "/v1/apply", body, timeout=timeout)
        return report

    def wait(self, timeout: float = 60.0, names: list[str] | None = None, *,
             ready: bool = False) -> dict[str, Any]:
        """Until the instances left the start-up states; with ``ready``, until each is ready
        or failed to be (the reply's ``ready`` names the ready ones)."""
        body: dict[str, Any] = {"timeout": timeout, "names": names}
        if ready:
            body["ready"] = True
        reply: dict[str, Any] = self.request("POST", "/v1/wait", body, timeout=timeout + 30)
        return reply

    def _control(self, verb: str, names: list[str] | None, key: str) -> list[str]:
        done: list[str] = self.request("POST", f"/v1/{verb}", {"names": names})[key]
        return done

    def start(self, names: list[str] | None = None) -> list[str]:
        return self._control("start", names, "started")

    def stop(self, names: list[str] | None = None) -> list[str]:
        return self._control("stop", names, "stopped")

    def remove(self, names: list[str]) -> list[str]:
        """Stop these agents' (or instances') instances and forget their state."""
        return self._control("rm", names, "removed")

    def start_wait(self, names: list[str] | None = None, timeout: float = 60.0,
                   verb: str = "start") -> dict[str, Any]:
        """Start (or ``verb="restart"``), replying once each instance is ready or failed to
        be: ``started`` (or ``restarted``), ``settled`` (false: the timeout came first),
        ``ready`` (the ready ones) and the instances' rows."""
        reply: dict[str, Any] = self.request("POST", f"/v1/{verb}",
                                             {"names": names, "wait": timeout},
                                             timeout=timeout + 30)
        return reply

    def restart(self, names: list[str] | None = None) -> list[str]:
        return self._control("restart", names, "restarted")

    def scale(self, agent: str, replicas: int) -> dict[str, list[str]]:
        report: dict[str, list[str]] = self.request(
            "POST", "/v1/scale", {"agent": agent, "replicas": replicas})
        return report

    def down(self) -> list[str]:
        stopped: list[str] = self.request("POST", "/v1/down", {})["stopped"]
        return stopped

    def shutdown(self, stop_fleet: bool = True, timeout: float | None = None) -> list[str]:
        """Stop the fleet (``stop_fleet``), then the daemon itself, after its reply: the
        instances stopped. (``LocalFleet``: its supervisor goes with ``close``.)"""
        stopped: list[str] = self.request("POST", "/v1/shutdown", {"stop_fleet": stop_fleet},
                                          timeout=timeout)["stopped"]
        return stopped

    def exec_spec(self, agent: str) -> dict[str, Any]:
        spec: dict[str, Any] = self.request("GET", "/v1/exec" + _query([("agent", agent)]))
        return spec

    def logs(self, agents: list[str] | None = None, **filters: Any) -> list[dict[str, Any]]:
        """Stored records, oldest first; filters: since, until, grep, level, instance (a list
        of instance names), run, tail (per agent)."""
        return [json.loads(line) for line in self.log_lines(agents, **filters)
                if line.strip()]

    def log_lines(self, agents: list[str] | None = None, **filters: Any) -> Iterator[bytes]:
        """``logs`` as the daemon sends them: one JSON record a line, streamed, as stored."""
        pairs = [("agent", a) for a in agents or []] + _filter_pairs(filters)
        return self.lines("GET", "/v1/logs" + _query(pairs))

    def events(self, *, logs: bool = False, agents: list[str] | None = None,
               **filters: Any) -> Iterator[dict[str, Any]]:
        """``{"event": "state", "data": INSTANCE}`` on every state change and, with ``logs``,
        ``{"event": "log", "data": RECORD}`` for every record (filters: grep, level,
        instance); endless. Subscribed when this returns: changes made after the call are
        all seen."""
        return _events(self.event_lines(logs=logs, agents=agents, **filters))

    def event_lines(self, *, logs: bool = False, agents: list[str] | None = None,
                    **filters: Any) -> Iterator[bytes]:
        """``events`` as the daemon sends them: the server-sent events' lines."""
        pairs = [("logs", "1")] if logs else []
        pairs += [("agent", a) for a in agents or []] + _filter_pairs(filters)
        return self.lines("GET", "/v1/events" + _query(pairs))

    def journal(self, agents: list[str] | None = None, *, tail: int | None = None,
                follow: bool = False) -> Iterator[dict[str, Any]]:
        """The kept events of ``agents`` (all when None), oldest first, the last ``tail``;
        with ``follow`` then the new ones, endless (followed before the history is read, so
        none falls between)."""
        live = self.event_lines(agents=agents, journal=1) if follow else None
        pairs = [("agent", a) for a in agents or []]
        pairs += [("tail", str(tail))] if tail is not None else []
        try:
            history = self.lines("GET", "/v1/journal" + _query(pairs))
        except BaseException:
            if live is not None:
                live.close()  # type: ignore[attr-defined]  # a generator at both ends
            raise
        return _journal(history, live)

    def metrics(self) -> str:
        body: bytes = self.request("GET", "/metrics")
        return body.decode()

    def usage(self) -> dict[str, dict[str, Any]]:
        """Each running instance's ``cpu_seconds`` and ``rss_bytes`` now, by name."""
        usage: dict[str, dict[str, Any]] = self.request("GET", "/v1/usage")["instances"]
        return usage

    def dashboard(self, port: int | None = None) -> dict[str, Any]:
        """Serve the web dashboard (on ``port``, else the manifest's, else a free one) if it
        is not served yet: its ``url``, ``port`` and a one-time ``link`` for a browser."""
        reply: dict[str, Any] = self.request("POST", "/v1/dashboard", {"port": port})
        return reply



def _journal(history: Iterator[bytes], live: Iterator[bytes] | None
             ) -> Iterator[dict[str, Any]]:
    last = 0
    for line in history:
        if line.strip():
            event = json.loads(line)
            last = event["id"]
            yield event
    for item in _events(live) if live is not None else ():
        if item["event"] == "journal" and item["data"]["id"] > last:
            last = item["data"]["id"]
            yield item["data"]


def _events(lines: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    kind = ""
    for line in lines:
        if line.startswith(b"event: "):
            kind = line[7:].decode()
        elif line.startswith(b"data: "):
            yield {"event": kind, "data": json.loads(line[6:])}
