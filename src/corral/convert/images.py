"""The image an exported agent runs in, for the formats that run everything in containers
(compose, Kubernetes). A container agent's own ``image`` as it is; its ``build`` as it is (its
Containerfile in its directory); a process or venv agent's built from the Containerfile that
``isolation: container`` would generate for it (``drivers.container.build.containerfile``),
from the same requirements, in its workdir as the context, so growing an agent to a container
and exporting it give the same image."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corral.convert.report import Report

if TYPE_CHECKING:
    from corral.manifest.spec import Agent, Manifest

# a public base for generated builds (the container level's default is a local debootstrap
# image that exists only on the host that made it); ``--set base=IMAGE`` changes it
DEFAULT_BASE = "docker.io/library/python:3.11-slim-bookworm"
HOST_LEVELS = ("process", "venv", "sandbox")


@dataclass(frozen=True, slots=True)
class Image:
    """``ref``: what the workload runs. ``context``: the build's context (absolute), None for
    an image run as is. ``containerfile``: the text of a generated Containerfile (the
    exporter writes it as ``generated_path``); None with the agent's own (``own_file``,
    absolute) or no build."""

    ref: str
    context: str | None = None
    containerfile: str | None = None
    own_file: str | None = None
    pull_policy: str = "missing"

    @property
    def built(self) -> bool:
        return self.context is not None


def local_ref(project: str, agent: str, registry: str | None = None) -> str:
    name = f"corral-{project}-{agent}:latest"
    return f"{registry.rstrip('/')}/{name}" if registry else f"localhost/{name}"


def for_agent(manifest: Manifest, name: str, report: Report, *, base: str | None = None,
              registry: str | None = None) -> Image:
    """The image agent ``name`` runs in; what changes on the way goes in ``report``.
    ``registry``: where built images are pushed (their refs name it), else ``localhost/``."""
    from corral.drivers.container import build
    from corral.drivers.container.options import container_options
    from corral.drivers.host.options import venv_block

    agent = manifest.agents[name]
    options = container_options(agent)
    ref = local_ref(manifest.name, name, registry)
    if agent.isolation == "container":
        if options.image is not None and options.build is None:
            return Image(options.image, pull_policy=options.pull_policy)
        recipe = build.recipe(agent.workdir, build=options.build, file=options.file,
                              base=options.base or base or DEFAULT_BASE)
        return _built(recipe, ref, name, report, options.base is None and base is None)
    if agent.isolation not in HOST_LEVELS:
        report.changed(name, "isolation", f"{agent.isolation} runs as a container here "
                       "(its guest's kernel and walls are not carried)")
    elif agent.isolation == "sandbox":
        report.changed(name, "isolation", "sandbox runs as a container: the container's own "
                       "walls, not bubblewrap's")
    else:
        report.changed(name, "isolation", f"{agent.isolation} runs as a container built from "
                       "the Containerfile that isolation: container generates")
    venv = venv_block(agent)
    recipe = build.recipe(agent.workdir, base=options.base or base or DEFAULT_BASE,
                          requirements=venv.requirements if venv else None,
                          pyproject=venv.pyproject if venv else None,
                          packages=tuple(venv.packages) if venv else ())
    if _uses_host_programs(agent):
        report.changed(name, "command", f"{agent.command[0]!r} must exist in the image "
                       f"(base {recipe.base}); add it with a Containerfile of the agent's own")
    return _built(recipe, ref, name, report, options.base is None and base is None)


def _built(recipe: object, ref: str, name: str, report: Report, default_base: bool) -> Image:
    from corral.drivers.container import build

    assert isinstance(recipe, build.Recipe)
    if recipe.file is not None:
        return Image(ref, context=recipe.context, own_file=recipe.file)
    if default_base:
        report.changed(name, "container.base", f"the generated build starts FROM "
                       f"{DEFAULT_BASE} (the local debootstrap base exists only on this host)")
    return Image(ref, context=recipe.context,
                 containerfile=build.containerfile(recipe, from_context=True))


def _uses_host_programs(agent: Agent) -> bool:
    """A command that is not Python's: the base image has Python, not the host's programs."""
    program = os.path.basename(agent.argv[0])
    return not (program.startswith("python") or program in ("sh", "bash", "pip", "env"))


def generated_path(agent: str) -> str:
    """Where an export writes an agent's generated Containerfile, in its own files."""
    return f"build/{agent}/Containerfile"
