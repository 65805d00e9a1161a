"""The supervisor's side of secrets: an instance's task as it starts, with its secrets.

Values are read at every start (``corral.secrets``), never stored: not in the state store, the
API, the events. ``environment`` sources read the variables the CLI sent with ``corral up``
(over the 0600 socket, kept in memory only) over the daemon's own (clean) environment. Files go to a
private tmpfs dir per instance, rewritten at each start, removed with the fleet.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from corral import secrets
from corral.drivers.base import Task
from corral.runtime.environ import clean_base
from corral.secrets import SecretError, Source
from corral.sha import sha256

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
        root = secrets.secrets_root()
        tag = f"{project}-{sha256(state_dir.encode()).hexdigest()[:8]}"
        # no tmpfs: the state dir's run dir (0700), and `corral doctor` says so
        self.root = (os.path.join(root, f"corral-{os.getuid()}", tag) if root
                     else os.path.join(state_dir, "run", "secrets"))
        self.on_tmpfs = root is not None

    def directory(self, instance: str) -> str:
        return os.path.join(self.root, instance)

    async def task_with_secrets(self, task: Task, sources: Mapping[str, Any],
                                sent: Mapping[str, str]) -> Task:
        """``sent``: the variables `corral up` sent for environment sources."""
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
        files: dict[str, str] = {}
        for use in uses:
            if use.env is not None:
                env[use.env] = values[use.source]
            else:
                files[use.target or use.source] = values[use.source]
        directory = self.directory(task.instance)
        if files:
            await asyncio.to_thread(secrets.write_files, directory, files)
            env["CORRAL_SECRETS_DIR"] = directory
        self._redact(task.instance, values.values())
        return replace(task, env=env)

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
