"""The supervisor's side of secrets: an instance's task as it starts, with its secrets.

Values are read at every start (``corral.secrets``), never stored: not in the state store, the
API, the events. ``environment`` sources read the variables the CLI sent with ``corral up``
(over the 0600 socket, kept in memory only) over the daemon's own (clean) environment. Files go to a
private tmpfs dir per instance, rewritten at each start, removed with the fleet.

The dirs, on a tmpfs others may write (``/dev/shm``), are made through ``corral.ownership.privdir``
(no link followed, a stranger's dir refused, a stale 0755 one made 0700):

- ``ROOT/corral-UID/FLEET/INSTANCE``: ``corral-UID`` and ``FLEET`` are corral's, 0700; the
  instance's dir and files belong to the agent's identity (``corral.ownership.identity``), dir 0500
  (0700 when that is corral itself), files 0400. Agents running as corral itself and
  sandboxes and containers (whose engine binds the dir) read theirs from here.
- ``ROOT/corral-UID.uAGENTUID/FLEET/INSTANCE``, every dir 0700 and the agent's: a process or
  venv agent with ``user:`` opens its files by path on the host, and could not pass corral's
  0700 dirs; no other user can pass its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from corral import secrets
from corral.drivers.base import Task
from corral.environ import clean_base
from corral.errors import CorralError
from corral.lean.sha import sha256
from corral.ownership import identity, privdir
from corral.paths import StateLayout
from corral.secrets import SecretError, Source

Redact = Callable[[str, Iterable[str]], None]  # (instance, values)


def _environ(sent: Mapping[str, str]) -> dict[str, str]:
    """Where ``environment`` sources are looked up, and what a ``command`` source runs
    with: the clean base of the daemon's environment and what `corral up` sent (the
    sources and what inherit_env names: a password manager's session variable goes there)."""
    return {**clean_base(os.environ), **sent}


def source_of(name: str, spec: Any) -> Source:
    """A ``secrets:`` entry of the manifest as a ``corral.secrets.Source``."""
    return Source(name=name, environment=spec.environment, file=spec.file,
                  env_file=spec.env_file, key=spec.key,
                  command=tuple(spec.command) if spec.command else None,
                  timeout=spec.timeout)


class SecretKeeper:
    def __init__(self, state_dir: str, project: str, redact: Redact) -> None:
        self._redact = redact
        self._state_dir = state_dir
        root = secrets.secrets_root()
        self.tag = f"{project}-{sha256(state_dir.encode()).hexdigest()[:8]}"
        # no tmpfs: the state dir's run dir (0700), and `corral doctor` says so
        self.base = root or StateLayout(state_dir).run_root
        self.top = f"corral-{os.geteuid()}" if root else "secrets"
        self.root = os.path.join(self.base, self.top, self.tag)
        self.on_tmpfs = root is not None

    def _owner(self, task: Task) -> identity.Identity | None:
        try:
            return identity.of(task.agent, task.spec.isolation, task.spec.user,
                               self._state_dir)
        except CorralError:
            return None  # the driver refuses to start it, in one line

    def _parts(self, task: Task, owner: identity.Identity | None
               ) -> list[tuple[str, int, int, int]]:
        me, my_gid = os.geteuid(), os.getegid()
        if owner is None:
            return [(self.top, 0o700, me, my_gid), (self.tag, 0o700, me, my_gid),
                    (task.instance, 0o700, me, my_gid)]
        if task.spec.isolation in ("process", "venv"):  # reads them by host path
            mine = (0o700, owner.uid, owner.gid)
            return [(f"{self.top}.u{owner.uid}", *mine), (self.tag, *mine),
                    (task.instance, *mine)]
        return [(self.top, 0o700, me, my_gid), (self.tag, 0o700, me, my_gid),
                (task.instance, 0o500, owner.uid, owner.gid)]

    def instance_dir(self, task: Task) -> str:
        """The instance's private dir on the host, as ``_write`` makes it."""
        return os.path.join(self.base, *(p[0] for p in self._parts(task, self._owner(task))))

    def owner_ids(self, task: Task) -> tuple[int, int]:
        """Who the instance's private dir and files belong to: its identity, or corral."""
        owner = self._owner(task)
        return (owner.uid, owner.gid) if owner else (os.geteuid(), os.getegid())

    def directory(self, instance: str) -> str:
        """The dir of an instance running as corral itself, or sandboxed."""
        return os.path.join(self.root, instance)

    def _write(self, task: Task, files: Mapping[str, str]) -> str:
        owner = self._owner(task)
        parts = self._parts(task, owner)
        try:
            fd = privdir.make_path(self.base, parts)
        except OSError as exc:
            raise SecretError(f"agents.{task.agent}: its secrets dir: {exc.strerror or exc}"
                              ) from None
        try:
            privdir.empty(fd)
            uid, gid = (owner.uid, owner.gid) if owner else (os.geteuid(), os.getegid())
            privdir.write_files(fd, files, uid=uid, gid=gid)
        finally:
            os.close(fd)
        return os.path.join(self.base, *(p[0] for p in parts))

    async def task_with_secrets(self, task: Task, sources: Mapping[str, Any],
                                sent: Mapping[str, str],
                                extra: Mapping[str, str] | None = None) -> Task:
        """``sent``: the variables `corral up` sent for environment sources; ``extra``:
        files of corral's for the same private dir (an agent's cloud config)."""
        uses = task.spec.secrets
        missing = [u.source for u in uses if u.source not in sources]
        if missing:
            raise SecretError(f"secret {missing[0]}: not declared under the top-level secrets: "
                              "(declare it, then 'corral up')")
        wanted = [source_of(u.source, sources[u.source]) for u in uses]
        values, problems = await asyncio.to_thread(secrets.resolve_all, wanted,
                                                   _environ(sent))
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise SecretError(problems[0] + more)
        env = dict(task.env)
        files: dict[str, str] = dict(extra or {})
        for use in uses:
            if use.env is not None:
                env[use.env] = values[use.source]
            else:
                files[use.target or use.source] = values[use.source]
        if files:
            env["CORRAL_SECRETS_DIR"] = await asyncio.to_thread(self._write, task, files)
        self._redact(task.instance, values.values())
        return replace(task, env=env)

    async def values(self, names: set[str], sources: Mapping[str, Any],
                     sent: Mapping[str, str]) -> dict[str, str]:
        """The values of the secrets ``names`` (for the daemon's own use: log forwarding's
        headers); a ``SecretError`` names the first that cannot be read."""
        wanted = [source_of(name, sources[name]) for name in sorted(names)]
        values, problems = await asyncio.to_thread(secrets.resolve_all, wanted,
                                                   _environ(sent))
        if problems:
            raise SecretError(problems[0])
        self._redact("", values.values())
        return dict(values)

    async def read_all(self, sources: Mapping[str, Any], sent: Mapping[str, str]) -> None:
        """Read every declared secret that can be read, for redaction only (nothing is
        written); one that cannot is left to the agents using it, which block on it."""
        wanted = [source_of(name, spec) for name, spec in sources.items()]
        try:
            values, _ = await asyncio.to_thread(secrets.resolve_all, wanted, _environ(sent))
        except Exception:  # e.g. a command that cannot be executed: the
            return  # agents using it get the one-line problem when they start
        self._redact("", values.values())

    def forget(self) -> None:
        """Remove every secret file of this fleet (``down``)."""
        import shutil  # here: shutil pulls in bz2 and lzma, resident for the fleet's life (S2)

        shutil.rmtree(self.root, ignore_errors=True)
        try:  # and the dirs of agents with a user: of their own
            tops = [e for e in os.listdir(self.base) if e.startswith(f"{self.top}.u")]
        except OSError:
            return
        for top in tops:
            shutil.rmtree(os.path.join(self.base, top, self.tag), ignore_errors=True)
            with contextlib.suppress(OSError):  # another fleet's are still in it
                os.rmdir(os.path.join(self.base, top))
