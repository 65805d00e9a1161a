"""The engine's REST API: Docker's, which Podman's service also speaks (its "compat" API),
so one set of requests serves both. The one place Podman's own (libpod) API is used is a
forced remove, where compat would first give a running container its 10 s stop timeout.

A start is ``create`` then ``start`` (a few milliseconds of corral's own on top of what the
engine does); ``wait`` and ``logs`` are long-lived requests, one connection each.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from typing import Any

from corral.drivers.base import Stream
from corral.drivers.container import credentials, http
from corral.drivers.container.engine import Engine, EngineError
from corral.drivers.container.runargs import RunSpec, api_body
from corral.drivers.container.transport.base import PULL_FIX, Feed, Found, Ops, Progress

V = "/v1.41"  # Docker 20.10's API: both engines here serve it (Docker >= 20.10, Podman >= 3)
LIBPOD = "/v4.0.0/libpod"
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # the engines'
_MODE_DIR, _MODE_SYMLINK = 1 << 31, 1 << 27  # Go's os.FileMode type bits, as stat reports
_STREAMS: dict[int, Stream] = {1: "stdout", 2: "stderr"}


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def _q(text: str) -> str:
    """Percent-encoded for a path segment or a query value (``urllib.parse`` stays out of
    the daemon: it is one of the modules its memory test keeps out)."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode())


def _message(body: Any, status: int) -> str:
    """The engine's own words: Docker's ``message``, Podman's ``message`` (its ``cause`` is
    a shorter form of the same)."""
    if isinstance(body, dict):
        text = body.get("message") or body.get("cause")
        if text:
            return str(text).strip().splitlines()[-1]
    return f"HTTP {status}"


class ApiOps:
    via = "api"
    looks_in_container = True  # the command lookup reads the created container's files

    def __init__(self, engine: Engine, socket: str, *, fallback: Ops) -> None:
        self.engine = engine
        self.socket = socket
        self._fallback = fallback  # what makes networks (below): the CLI, passed in

    async def _call(self, method: str, target: str, body: Any = None) -> tuple[int, Any]:
        try:
            return await http.request(self.socket, method, target, body)
        except http.HttpError as exc:
            raise EngineError(f"{self.engine.name} API at {self.socket}: {exc}",
                              "run `corral doctor`") from None

    async def _ok(self, method: str, target: str, body: Any = None, *, what: str,
                  fix: str = "run `corral doctor`", accept: tuple[int, ...] = ()) -> Any:
        status, reply = await self._call(method, target, body)
        if status >= 300 and status not in accept:
            raise EngineError(f"{what}: {self.engine.name} says: {_message(reply, status)}",
                              fix)
        return reply

    async def ping(self) -> bool:
        try:
            status, _ = await http.request(self.socket, "GET", "/_ping")
        except http.HttpError:
            return False
        return status == 200

    async def image_exists(self, ref: str) -> bool:
        return await self.image_id(ref) is not None

    async def image_id(self, ref: str) -> str | None:
        status, reply = await self._call("GET", f"{V}/images/{_q(ref)}/json")
        found = reply.get("Id") if status == 200 and isinstance(reply, dict) else None
        return found if isinstance(found, str) else None

    async def pull(self, ref: str, progress: Progress | None = None) -> None:
        """``POST /images/create``, the engine's progress messages streamed back, with the
        engine's stored login for the registry as ``X-Registry-Auth`` (``credentials``). One
        kept by a credential helper: the CLI pulls (it runs the helper)."""
        try:
            login = credentials.login_for(self.engine.name, ref)
        except credentials.NeedsHelper:
            await self._fallback.pull(ref, progress)
            return
        headers = {"X-Registry-Auth": login.header()} if login is not None else {}
        target = f"{V}/images/create?fromImage={_q(_tagged(ref))}"
        try:
            reply = await http.open_request(self.socket, "POST", target, headers=headers)
        except http.HttpError as exc:
            raise EngineError(f"{self.engine.name} API at {self.socket}: {exc}",
                              "run `corral doctor`") from None
        lines = _PullLines(progress)
        try:
            if reply.status >= 300:
                body = await reply.read()
                raise EngineError(f"pulling {ref} failed: {self.engine.name} says: "
                                  f"{_message(_decoded(body), reply.status)}", PULL_FIX)
            async for data in reply.chunks():
                lines.feed(data)
        except (http.HttpError, OSError, asyncio.IncompleteReadError) as exc:
            raise EngineError(f"pulling {ref} failed: the engine broke the connection: {exc}",
                              "run `corral doctor`") from None
        finally:
            await reply.aclose()
        if lines.error:
            raise EngineError(f"pulling {ref} failed: {self.engine.name} says: {lines.error}",
                              PULL_FIX)

    async def containers(self, labels: Mapping[str, str]) -> list[Found]:
        filters = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        rows = await self._ok("GET", f"{V}/containers/json?all=1&filters={_q(filters)}",
                              what="listing containers failed")
        found = []
        for row in rows or []:
            names = row.get("Names") or [""]
            found.append(Found(row["Id"], names[0].lstrip("/"), str(row.get("State", "")),
                               row.get("Labels") or {}))
        return found

    async def ensure_network(self, name: str, project: str) -> None:
        status, _ = await self._call("GET", f"{V}/networks/{_q(name)}")
        if status == 200:
            return
        # The CLI makes it: Podman's compat create differs from its own in details (DNS on
        # the network) that agents reaching each other by name rely on; once per fleet.
        await self._fallback.ensure_network(name, project)

    async def ensure_volume(self, name: str, project: str) -> None:
        status, _ = await self._call("GET", f"{V}/volumes/{_q(name)}")
        if status == 200:
            return
        status, reply = await self._call("POST", f"{V}/volumes/create", {
            "Name": name, "Labels": {"corral.project": project}})
        if status >= 300 and "exists" not in _message(reply, status):
            raise EngineError(f"cannot create volume {name}: {self.engine.name} says: "
                              f"{_message(reply, status)}", "run `corral doctor`")

    async def command_missing(self, image: str, exe: str, container: str | None = None) -> bool:
        """Whether ``exe`` is absent from ``container``'s file system (created, running or
        exited: the engine reads its root either way), looked up on its ``PATH`` as a shell
        would: one ``HEAD .../archive`` per candidate, all at once. No container is run for
        it. Not knowing (no container given, the engine cannot tell) is not missing."""
        if container is None:
            return False
        status, info = await self._call("GET", f"{V}/containers/{_q(container)}/json")
        if status != 200 or not isinstance(info, dict):
            return False
        config = info.get("Config") or {}
        env = dict(e.partition("=")[::2] for e in config.get("Env") or [])
        if "/" in exe:
            workdir = config.get("WorkingDir") or "/"
            paths = [exe if exe.startswith("/") else f"{workdir.rstrip('/')}/{exe}"]
        else:
            search = env.get("PATH") or _DEFAULT_PATH
            paths = [f"{d.rstrip('/')}/{exe}" for d in search.split(":") if d.startswith("/")]
        found = await asyncio.gather(*(self._runnable(container, p) for p in paths))
        unsure = [p for p, f in zip(paths, found, strict=True) if f is None]
        if unsure and not any(found):  # an engine busy with other starts: ask once more
            await asyncio.sleep(0.05)
            found = [f for f in found if f is not None]
            found += await asyncio.gather(*(self._runnable(container, p) for p in unsure))
        return all(f is False for f in found)

    async def _runnable(self, container: str, path: str) -> bool | None:
        """True: a file that can run; False: nothing runnable there; None: cannot tell."""
        try:
            reply = await http.open_request(
                self.socket, "HEAD", f"{V}/containers/{_q(container)}/archive?path={_q(path)}")
        except http.HttpError:
            return None
        await reply.aclose()
        if reply.status == 404:
            return False
        if reply.status != 200:
            return None
        try:
            stat = json.loads(base64.b64decode(
                reply.headers.get("x-docker-container-path-stat", "")))
            mode = int(stat.get("mode", 0))
        except (ValueError, TypeError, AttributeError):
            return None
        if stat.get("isDir") or mode & _MODE_DIR:
            return False
        # Docker reports a symlink itself (taken as runnable: the start tells if it dangles);
        # Podman what it points to
        return bool(mode & 0o111 or mode & _MODE_SYMLINK)

    async def run(self, spec: RunSpec, *, cwd: str) -> str:
        """Create and start; on a refusal nothing is left behind and the engine's message is
        the error. (``cwd`` is the CLI's: a service's conmon has the service's.)"""
        status, reply = await self._call("POST", f"{V}/containers/create?name={_q(spec.name)}",
                                         api_body(spec))
        if status >= 300:
            raise EngineError(_message(reply, status), "")
        cid = str(reply["Id"])
        status, reply = await self._call("POST", f"{V}/containers/{cid}/start")
        if status >= 300 and status != 304:
            await self.remove(cid)
            raise EngineError(_message(reply, status), "")
        return cid

    async def state(self, container: str) -> dict[str, Any] | None:
        status, reply = await self._call("GET", f"{V}/containers/{_q(container)}/json")
        if status != 200 or not isinstance(reply, dict):
            return None
        state = reply.get("State")
        return state if isinstance(state, dict) else None

    async def wait(self, container: str, *, poll: float | None = None) -> int | None:
        """The exit code, once it exited. Docker's daemon answers on the exit event; Podman's
        service polls the container (every 250 ms, or ``poll`` seconds: its own endpoint
        takes an interval, the compat one does not)."""
        if self.engine.name == "podman":
            every = f"&interval={round(poll * 1000)}ms" if poll else ""
            status, reply = await self._call(
                "POST", f"{LIBPOD}/containers/{_q(container)}/wait"
                        f"?condition=stopped&condition=exited{every}")
            return reply if status == 200 and isinstance(reply, int) else None
        status, reply = await self._call("POST", f"{V}/containers/{_q(container)}/wait")
        if status != 200 or not isinstance(reply, dict):
            return None
        code = reply.get("StatusCode")
        return int(code) if isinstance(code, int) else None

    async def kill(self, container: str, signal: str) -> None:
        await self._call("POST", f"{V}/containers/{_q(container)}/kill?signal={signal}")

    async def remove(self, container: str) -> None:
        """Force-remove at once: whatever it runs has had its grace period (or never ran)."""
        if self.engine.name == "podman":
            target = f"{LIBPOD}/containers/{_q(container)}?force=true&timeout=0"
        else:
            target = f"{V}/containers/{_q(container)}?force=1"
        await self._call("DELETE", target)

    def logs(self, container: str, *, follow: bool = True) -> ApiLogs:
        return ApiLogs(self.socket, container, follow)


def _tagged(ref: str) -> str:
    """With ``:latest`` when it names no tag nor digest (without one Docker pulls every tag
    of the repository)."""
    name = ref.rpartition("/")[2]
    return ref if ":" in name or "@" in name else f"{ref}:latest"


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return {"message": raw.decode("utf-8", "replace").strip()}


class _PullLines:
    """A pull's reply: JSON messages one after another (``{"status", "id"}``; an ``error``
    ends it), read as they come; each layer's status shown once, not every byte count."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.error = ""
        self._buf = ""
        self._seen: set[tuple[str, str]] = set()
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> None:
        self._buf += data.decode("utf-8", "replace")
        while True:
            text = self._buf.lstrip()
            if not text:
                self._buf = ""
                return
            try:
                msg, end = self._decoder.raw_decode(text)
            except ValueError:
                self._buf = text  # the rest of it is still coming
                return
            self._buf = text[end:]
            if isinstance(msg, dict):
                self._one(msg)

    def _one(self, msg: dict[str, Any]) -> None:
        if msg.get("error"):
            self.error = str(msg["error"]).strip().splitlines()[-1]
            return
        status = str(msg.get("status") or msg.get("stream") or "").strip()
        layer = str(msg.get("id") or "")
        if self.progress is None or not status or (layer, status) in self._seen:
            return
        self._seen.add((layer, status))
        self.progress(f"{layer}: {status}" if layer else status)


class ApiLogs:
    """``GET /containers/ID/logs[?follow]``: one stream, stdout and stderr framed apart (an
    8-byte header per frame: the stream, three zero bytes, the length)."""

    def __init__(self, socket: str, container: str, follow: bool) -> None:
        self.socket = socket
        self.container = container
        self.follow = follow
        self._reply: http.Response | None = None
        self._opening: asyncio.Future[http.Response] | None = None
        self._cancelled = False

    async def pump(self, feed: Feed) -> None:
        target = (f"{V}/containers/{_q(self.container)}/logs?follow={int(self.follow)}"
                  "&stdout=1&stderr=1")
        # the head may come only with the first output (Podman): ``cancel`` must not wait
        opening = self._opening = asyncio.ensure_future(
            http.open_request(self.socket, "GET", target))
        try:
            await asyncio.wait({opening})
        except BaseException:
            opening.cancel()
            raise
        if opening.cancelled() or opening.exception() is not None:
            return
        reply = self._reply = opening.result()
        try:
            if reply.status != 200 or self._cancelled:
                return
            buf = bytearray()
            async for data in reply.chunks():
                buf += data
                at = 0
                while len(buf) - at >= 8:
                    size = int.from_bytes(buf[at + 4:at + 8], "big")
                    if len(buf) - at < 8 + size:
                        break
                    stream = _STREAMS.get(buf[at])
                    if stream is not None and size:
                        feed(stream, bytes(buf[at + 8:at + 8 + size]))
                    at += 8 + size
                del buf[:at]
        except (http.HttpError, asyncio.IncompleteReadError, OSError):
            pass  # the engine went away, or cancel: what was read is handed on
        finally:
            await reply.aclose()

    def cancel(self) -> None:
        """End the stream: its connection closes, ``pump`` returns."""
        self._cancelled = True
        if self._opening is not None:
            self._opening.cancel()
        if self._reply is not None:
            self._reply.close()
