"""The daemon's side of agents' cloud credentials: one grant per instance, cached, replaced
before it expires, served on that instance's own socket.

``equip`` runs at every start of an instance that declares a provider's block (the runner's
secrets hook): it gets a grant first (so a denied role or an unreachable endpoint blocks the
instance with one line before it runs), then binds the instance's socket in its private dir
and says what the agent's environment and files become. The SDK in the agent calls
``fetch.py`` whenever its credentials near their expiry; each call is answered from the
cache, refreshed here once the grant is within ``refresh_before`` of its end. Grants live in
memory only: never in the state store, the events, the API or a log (their values go to the
log sink's redactor as soon as they are had).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from corral.cloud import peer
from corral.cloud.provider import AgentConfig, CloudError, Grant, Provider, load

SOCKET = "cloud.sock"
FETCH = "cloud-credentials.py"
MAX_PATH = 107  # sun_path, less its NUL


@dataclass(slots=True)
class _Served:
    server: asyncio.AbstractServer
    path: str


SYSTEM_PYTHON = ("/usr/bin/python3", "/bin/python3")


def fetch_argv(inside: str) -> list[str]:
    """The agent's credential_process: the system's interpreter (visible in a sandbox and to
    every user; corral's own may sit in a home a sandbox hides and other users cannot
    enter), else corral's with its venv link resolved; isolated, on the copy of
    ``fetch.py``, which needs the standard library only."""
    python = next((p for p in SYSTEM_PYTHON if os.access(p, os.X_OK)),
                  os.path.realpath(sys.executable))
    return [python, "-I", "-S", os.path.join(inside, FETCH), os.path.join(inside, SOCKET)]


def fetch_source() -> str:
    with open(os.path.join(os.path.dirname(__file__), "fetch.py"), encoding="utf-8") as f:
        return f.read()


class CredentialBroker:
    def __init__(self, fleet: Any, project: str, *, redact: Callable[[Iterable[str]], None],
                 pid_of: Callable[[str], int | None],
                 now: Callable[[], float] = time.time) -> None:
        """``fleet``: the manifest's ``cloud`` block; ``pid_of``: an instance's main pid
        while it runs (its tree may ask)."""
        self._fleet = fleet
        self._project = project
        self._redact = redact
        self._pid_of = pid_of
        self._now = now
        self._providers: dict[str, Provider] = {}
        self._grants: dict[str, Grant] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._served: dict[str, _Served] = {}
        self.granted = 0  # grants made (AssumeRole calls that succeeded): the tests count them

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = load(name, getattr(self._fleet, name), self._project)
        return self._providers[name]

    async def current(self, agent: str, instance: str, name: str, access: Any) -> Grant:
        """The instance's grant, a new one if it has none or it ends within the provider's
        ``refresh_before``."""
        lock = self._locks.setdefault(instance, asyncio.Lock())
        async with lock:
            grant = self._grants.get(instance)
            provider = self.provider(name)
            if grant is None or grant.expires - self._now() <= provider.refresh_before(access):
                grant = await asyncio.to_thread(provider.grant, agent, instance, access)
                self._redact(grant.values)
                self._grants[instance] = grant
                self.granted += 1
            return grant

    async def equip(self, agent: str, instance: str, name: str, access: Any, *,
                    inside: str) -> AgentConfig:
        """A fresh grant for a starting instance, and its config (files and variables) for
        its private dir seen at ``inside``; ``serve`` binds its socket once the files are
        written."""
        self._grants.pop(instance, None)  # a new run starts with credentials of its own
        grant = await self.current(agent, instance, name, access)
        config = self.provider(name).agent_config(access, fetch_argv(inside), inside)
        return AgentConfig({**config.files, FETCH: fetch_source()},
                           {**config.env, **grant.env}, config.drop)

    async def serve(self, agent: str, instance: str, name: str, access: Any, *,
                    directory: str, uid: int, gid: int) -> None:
        """Answer ``fetch.py`` on ``directory/cloud.sock``: the peer must run as ``uid`` in
        the instance's process tree (``peer``)."""
        path = os.path.join(directory, SOCKET)
        if len(path.encode()) > MAX_PATH:
            raise CloudError(f"agents.{agent}.{name}: the socket path {path} is longer than "
                             f"{MAX_PATH} bytes (set XDG_RUNTIME_DIR or use a shorter state "
                             "dir)")
        await self.release(instance)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                reply = await self._reply(agent, instance, name, access, writer, uid)
                writer.write(json.dumps(reply).encode())
                await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()

        old = os.umask(0o177)  # the socket is 0600 from its first moment
        try:
            server = await asyncio.start_unix_server(answer, path=path)
        finally:
            os.umask(old)
        if (uid, gid) != (os.geteuid(), os.getegid()):
            os.chown(path, uid, gid)
        self._served[instance] = _Served(server, path)

    async def _reply(self, agent: str, instance: str, name: str, access: Any,
                     writer: asyncio.StreamWriter, uid: int) -> Mapping[str, Any]:
        sock = writer.get_extra_info("socket")
        why = peer.refusal(sock, uid=uid, root=self._pid_of(instance))
        if why is not None:
            return {"error": f"{instance}'s credentials are for its own processes: {why}"}
        try:
            grant = await self.current(agent, instance, name, access)
        except CloudError as exc:
            return {"error": str(exc)}
        return grant.document

    async def release(self, instance: str) -> None:
        served = self._served.pop(instance, None)
        if served is not None:
            served.server.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(served.path)

    async def close(self) -> None:
        """Every socket closed and every grant forgotten (``down``, the daemon's exit)."""
        for instance in list(self._served):
            await self.release(instance)
        self._grants.clear()
