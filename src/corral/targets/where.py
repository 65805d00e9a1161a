"""Where a project's fleet went: ``corral up --target kubernetes`` writes
``STATE/target.json`` (target, context, namespace) so that ``ps``, ``logs`` and ``down`` go
there without the flags again; ``--target local`` on any of them overrides it. Kept
import-light: ``corral ps`` reads it on every poll (one ``stat`` when there is none)."""

from __future__ import annotations

import contextlib
import json
import os

TARGETS = ("local", "kubernetes")


def _path(state_dir: str) -> str:
    return os.path.join(state_dir, "target.json")


def remembered(state_dir: str) -> dict[str, str | None] | None:
    """What the last ``up --target`` recorded, or None (the local daemon)."""
    try:
        with open(_path(state_dir), encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("target") in TARGETS else None


def chosen(flag: str | None, state_dir: str) -> dict[str, str | None] | None:
    """The remote target a command acts on: the flag's (``--target kubernetes``), else the
    remembered one; None for the local daemon (``--target local``, or nothing recorded)."""
    if flag == "local":
        return None
    found = remembered(state_dir)
    if flag is None:
        return found if found and found["target"] != "local" else None
    if found and found["target"] == flag:
        return found
    return {"target": flag, "context": None, "namespace": None, "project": None}


def remember(state_dir: str, target: str, context: str | None, namespace: str,
             project: str) -> None:
    """``project``: the label value the fleet's objects carry (``down`` needs no manifest)."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    tmp = _path(state_dir) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"target": target, "context": context, "namespace": namespace,
                   "project": project}, f)
    os.replace(tmp, _path(state_dir))


def forget(state_dir: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_path(state_dir))
