"""The ``ray:`` block, declared by the ray driver (``RayDriver.blocks``) and decoded for it by
the daemon, so ``task.spec.options["ray"]`` arrives typed. ``cluster: {ray: {...}}`` gives its
defaults for every agent placed on the cluster (``placement: ray``)."""

from __future__ import annotations

from corral.lean.record import Record, record
from corral.manifest.rules import Duration
from corral.manifest.spec import Agent


@record(kw_only=True)
class RayOptions(Record):
    """A Ray cluster the agent runs on: its GCS ``address`` (``HOST:PORT``); ``auto``, a
    local head corral starts itself (on 127.0.0.1, stopped when nothing runs on it)."""

    __pydantic_config__ = {"extra": "forbid"}
    address: str = "auto"
    # how long a start waits for a node with the agent's cpus and memory free
    placement_timeout: Duration = 60.0


blocks: dict[str, type[Record]] = {"ray": RayOptions}
# the levels it runs on a node: the agent's command as is, or in a venv Ray builds there
# (``venv``); a placement only, never an agent's ``isolation``
places = ("process", "venv")
placement_only = True


def unplaceable(agent: Agent) -> str | None:
    """Why ``agent`` cannot run on a node (``corral up --target ray`` leaves it on this host;
    placed by its own word, its start fails with this line): its venv needs what only this
    host builds. None: it can."""
    if agent.isolation != "venv":
        return None
    if agent.options.get("node") is not None:
        return "a node: block (npm ci) is not built on the ray placement"
    venv = agent.options.get("venv")
    python = getattr(venv, "python", None)
    if python is not None:
        return (f"venv.python {python} cannot be chosen on the ray placement (a node's venv "
                "is over the Python Ray runs there)")
    return None


def ray_options(agent: Agent) -> RayOptions:
    """The agent's block, or the defaults when it wrote none."""
    found: RayOptions | None = agent.options.get("ray")
    return found if found is not None else RayOptions()
