"""One task builder: what an instance runs with, for every caller (the supervisor's instances,
``corral run``/``exec``/``build``, and later the exporters and remote backends), so the
``CORRAL_*`` set, the dirs and the masks cannot drift between them. The environment itself
comes from ``corral.environ``; secrets are added by ``runtime.keeper`` at start."""

from __future__ import annotations

from corral.drivers.base import Task
from corral.manifest.spec import Agent
from corral.paths import StateLayout


def build_task(*, project: str, project_dir: str, agent: str, spec: Agent, instance: str,
               index: int, env: dict[str, str], layout: StateLayout,
               masked: tuple[str, ...] = (), cache_dir: str | None = None,
               hosts: tuple[tuple[str, str], ...] = ()) -> Task:
    """``env``: the agent's environment (``environ.agent_environment``), shared by its
    replicas; the instance's own two variables go on top. ``cache_dir``: one string for
    every task of a fleet (S2), else the layout's."""
    from collections import ChainMap

    own = {"CORRAL_INSTANCE": instance, "CORRAL_INSTANCE_INDEX": str(index)}
    return Task(project=project, agent=agent, instance=instance, index=index, spec=spec,
                workdir=spec.workdir, run_dir=layout.run(instance),
                cache_dir=cache_dir if cache_dir is not None else layout.cache,
                env=ChainMap(own, env), project_dir=project_dir, masked=masked, hosts=hosts)
