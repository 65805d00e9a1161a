"""The ``venv:`` and ``node:`` blocks, and what an agent's files imply for them.

Both blocks belong to the host-process environment preparers (``python_env``, ``node_env``),
not to one driver: the venv driver runs an agent in them, and a sandbox agent may have them too
(a venv when it asks for one or its workdir implies one, as at the venv level). So the venv
driver declares them and the sandbox driver declares the same records; the loader routes
``venv:``/``node:`` here whatever the agent's isolation, as it always did.

Defaults (the loader hook ``normalize``, run on each agent with its paths made absolute):
isolation is ``venv`` when the agent has a ``venv:`` or ``node:`` block; a venv agent without
``venv:`` uses the workdir's requirements.txt, else its pyproject.toml, and so does a sandbox
agent without ``venv:`` or ``node:`` whose workdir has one (a sandbox is a wall around what the
agent was: moving a venv agent to ``sandbox`` keeps its venv); ``node.package`` must hold
package.json and a lock file.
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING, Annotated, Any

from corral.lean.record import Record, record
from corral.manifest.rules import FilePath
from corral.manifest.spec import Agent

if TYPE_CHECKING:  # the loader's hook only: the daemon decodes these records without pathlib
    from pathlib import Path

FORBID = {"extra": "forbid"}


@record(kw_only=True)
class VenvOptions(Record):
    """A per-agent Python environment built with uv, cached by a hash of its inputs."""

    __pydantic_config__ = FORBID
    requirements: Annotated[str, FilePath()] | None = None  # requirements.txt (from workdir)
    pyproject: Annotated[str, FilePath()] | None = None  # a pyproject.toml to install
    packages: list[str] = field(default_factory=list)  # extra requirement specifiers
    python: str | None = None  # e.g. "3.11"; default: the interpreter corral runs on


@record(kw_only=True)
class NodeOptions(Record):
    """A per-agent node_modules installed by ``npm ci`` from package.json and its lock file,
    cached by a hash of both (and the Node version), linked into the workdir."""

    __pydantic_config__ = FORBID
    # the dir holding package.json and package-lock.json (from workdir)
    package: Annotated[str, FilePath()] = "."


blocks: dict[str, type[Record]] = {"venv": VenvOptions, "node": NodeOptions}


def venv_block(agent: Agent) -> VenvOptions | None:
    found: VenvOptions | None = agent.options.get("venv")
    return found


def node_block(agent: Agent) -> NodeOptions | None:
    found: NodeOptions | None = agent.options.get("node")
    return found


VENV_FILES = (("requirements", "requirements.txt"), ("pyproject", "pyproject.toml"))


def normalize(name: str, spec: Any, project_dir: Path) -> tuple[Any, list[str]]:
    """Loader hook for one raw agent (paths already absolute): pick the isolation a venv or
    node block implies, find the venv files, check the node package."""
    from pathlib import Path

    from corral.manifest import files
    from corral.manifest.classes import absolute

    if not isinstance(spec, dict):
        return spec, []
    out, problems = dict(spec), []
    venv = out.get("venv")
    node = out.get("node")
    if venv is not None or node is not None:
        out.setdefault("isolation", "venv")
    workdir = Path(out["workdir"]) if isinstance(out.get("workdir"), str) else project_dir
    if isinstance(node, dict):
        package = absolute(workdir, str(node.get("package", ".")))
        out["node"] = {**node, "package": str(package)}
        if not files.is_file(package / "package.json"):
            problems.append(f"agents.{name}.node.package: no package.json in {package}")
        elif not any(files.is_file(package / f) for f in ("package-lock.json",
                                                       "npm-shrinkwrap.json")):
            problems.append(f"agents.{name}.node.package: no package-lock.json in {package} "
                            f"(run 'npm install --package-lock-only' there)")
    found = [(key, str(workdir / f)) for key, f in VENV_FILES if files.is_file(workdir / f)]
    detected = dict(found[:1])
    if isinstance(venv, dict):
        venv = dict(venv)
        for key, _ in VENV_FILES:
            if isinstance(venv.get(key), str):
                venv[key] = str(absolute(workdir, venv[key]))
                if not files.is_file(venv[key]):
                    problems.append(
                        f"agents.{name}.venv.{key}: file not found: {venv[key]} "
                        f"(paths here are relative to the workdir {workdir})"
                    )
        if not any(venv.get(k) for k in ("requirements", "pyproject", "packages")):
            venv.update(detected)
        out["venv"] = venv
    elif out.get("isolation") == "venv" and venv is None and node is None:
        if not detected:
            problems.append(
                f"agents.{name}: isolation venv needs requirements.txt or pyproject.toml "
                f"in {workdir} (or a venv: block)"
            )
        out["venv"] = detected
    elif out.get("isolation") == "sandbox" and venv is None and node is None and detected:
        out["venv"] = detected  # the venv level's inputs, found the same way
    return out, problems
