"""What an exporter reads besides the manifest: each instance's task from the one task builder
(``runtime.tasks.build_task``), so the ``CORRAL_*`` variables, the peers' addresses and the
hosts entries an exported agent gets are the ones ``corral up`` gives it. The environment is
built from the manifest alone (no shell variables, no secret values): an export is a file for
another machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corral.drivers.base import Task
    from corral.manifest.spec import Manifest

# variables that name this host's state dir, meaningless where the export runs
HOST_ONLY = ("CORRAL_STATE_DIR", "CORRAL_RUN_DIR", "CORRAL_CACHE_DIR", "CORRAL_SECRETS_DIR")


def task(manifest: Manifest, agent: str, index: int = 1,
         addresses: dict[str, str] | None = None) -> Task:
    """Instance ``index`` (from 1) of ``agent`` as the daemon would build it, with no shell
    variables inherited and no secrets read. ``addresses``: the other agents'
    ``CORRAL_ADDR_*``/``CORRAL_HOST_*`` where the export runs (Kubernetes: at their Services),
    instead of where they are on this host (``manifest.peers``)."""
    from corral import environ
    from corral.manifest import peers
    from corral.manifest.spec import instance_name
    from corral.paths import StateLayout
    from corral.runtime.tasks import build_task

    spec = manifest.agents[agent]
    env = environ.agent_environment(
        spec, project=manifest.name, name=agent, state_dir=manifest.state_dir,
        base={}, given={}, inherit=[], withheld=environ.sources(manifest),
        peers=peers.environment(manifest.agents, agent) if addresses is None else addresses)
    return build_task(project=manifest.name, project_dir=manifest.project_dir, agent=agent,
                      spec=spec, instance=instance_name(agent, index), index=index, env=env,
                      hosts=peers.hosts(manifest.agents, agent),
                      layout=StateLayout(manifest.state_dir))


def environment(manifest: Manifest, agent: str,
                addresses: dict[str, str] | None = None) -> dict[str, str]:
    """The agent's environment for an export: what its first instance gets, without the
    instance's own two variables and the host-only ones (``HOST_ONLY``); ``addresses`` as
    for ``task``."""
    env = dict(task(manifest, agent, addresses=addresses).env)
    for name in ("CORRAL_INSTANCE", "CORRAL_INSTANCE_INDEX", *HOST_ONLY):
        env.pop(name, None)
    return env
