"""Whom a host agent runs as, and what becomes its own before it starts (process, venv and vm
levels; the sandbox hands over more, and switches inside bwrap).

Run by root with a ``user:``, the agent's data dir becomes that user's and the workdir and
executable it cannot reach are one clear line instead of the agent's EACCES; the switch itself
is ``setpriv`` (``ownership.identity.switch``), after the cgroup join.
"""

from __future__ import annotations

import os

from corral.drivers.base import Task
from corral.ownership import identity as identities


def identity(task: Task) -> identities.Identity | None:
    """Whom the agent runs as (None: as corral); ``IdentityError`` when it cannot be."""
    return identities.of(task.agent, task.spec.isolation, task.spec.user,
                         os.path.dirname(task.cache_dir))


def hand_over(task: Task, ident: identities.Identity, exe: str) -> None:
    """Before the start: the data dir becomes the identity's; a workdir or executable it
    cannot reach is one clear line instead of the agent's EACCES."""
    where = f"agents.{task.agent}.user"
    # a venv's python links to the interpreter it was made from (pyenv's, under /root)
    for what, path in (("workdir", task.workdir), ("command", exe),
                       ("command", os.path.realpath(exe))):
        closed = identities.reachable(path, ident)
        if closed is not None:
            raise identities.IdentityError(
                f"{where}: {ident.name} cannot reach its {what} {path} ({closed} is closed "
                "to it)", f"open {closed} to it (chmod o+x {closed}), or move the agent "
                "where it can read")
    data_dir = task.env.get("CORRAL_STATE_DIR")
    if data_dir and os.path.isdir(data_dir):
        identities.admit(os.path.dirname(task.cache_dir), ident)
        identities.own(data_dir, ident)
        os.chmod(data_dir, 0o700)  # its own, and no one else's


def as_identity(ident: identities.Identity, argv: list[str], exe: str
                ) -> tuple[list[str], str]:
    """The argv and executable that run ``argv`` as ``ident`` (after the cgroup join)."""
    switch = identities.switch(ident, sandboxed=False)
    return [*switch, exe, *argv[1:]], switch[0]
