"""The dependency graph: start order in concurrent layers, stop order, cycles, and the
dependency rules the loader checks once every agent has validated.

Functions take the graph as ``{agent: [agents it depends on]}`` where that is all they need, so
the loader can check a manifest that is still partly invalid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from corral.errors import CorralError

if TYPE_CHECKING:
    from corral.manifest.spec import Agent

Graph = Mapping[str, Iterable[str]]


class _Depends(Protocol):
    @property
    def depends_on(self) -> Mapping[str, Any]: ...


class _Fleet(Protocol):
    """A manifest (``spec.Manifest``), or anything holding agents by name."""

    @property
    def agents(self) -> Mapping[str, _Depends]: ...

HINTED = 20  # unknown dependencies given a suggestion, and cycles listed

# conditions a dependency can only meet by exiting.
COMPLETION = frozenset({"completed", "completed_successfully"})
NEVER_COMPLETES = frozenset({"always", "unless-stopped"})


def edges(manifest: _Fleet) -> dict[str, list[str]]:
    """``{agent: sorted names it depends on}`` for every agent."""
    return {name: sorted(agent.depends_on) for name, agent in manifest.agents.items()}


def find_cycles(graph: Graph, limit: int = 1_000_000) -> list[list[str]]:
    """Every distinct cycle reachable by depth-first search (the first ``limit``), each as
    ``[a, b, a]``.

    Names the graph does not define are ignored (they are reported as unknown elsewhere).
    Visiting in sorted order makes the result, and so the error message, deterministic.
    """
    deps = {name: sorted(set(targets)) for name, targets in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []
    where: dict[str, int] = {}  # node -> its index on the path
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    # an explicit stack, not recursion: a chain of 3,000 agents is a valid manifest
    for root in sorted(deps):
        if root in state:
            continue
        stack = [(root, iter(deps[root]))]
        state[root], where[root] = 1, 0
        path.append(root)
        while stack:
            node, todo = stack[-1]
            dep = next(todo, None)
            if dep is None:
                stack.pop()
                path.pop()
                del where[node]
                state[node] = 2
            elif dep not in deps:
                continue
            elif state.get(dep) == 1:
                cycle = [*path[where[dep] :], dep]
                key = frozenset(cycle)
                if key not in seen and len(cycles) < limit:
                    seen.add(key)
                    cycles.append(cycle)
            elif dep not in state:
                state[dep], where[dep] = 1, len(path)
                path.append(dep)
                stack.append((dep, iter(deps[dep])))
    return cycles


def find_cycle(graph: Graph) -> list[str] | None:
    """The first cycle as ``[a, b, a]``, or None when the graph is acyclic."""
    cycles = find_cycles(graph, limit=1)
    return cycles[0] if cycles else None


def layers(graph: Graph) -> list[list[str]]:
    """Kahn's algorithm in rounds: each layer depends only on earlier layers. Linear in the
    edges (counts of unmet dependencies), not a scan of every agent per round."""
    deps = {name: {d for d in targets if d != name} for name, targets in graph.items()}
    deps = {name: {d for d in targets if d in deps} for name, targets in deps.items()}
    waiting = {name: len(targets) for name, targets in deps.items()}
    dependents: dict[str, list[str]] = {}
    for name, targets in deps.items():
        for target in targets:
            dependents.setdefault(target, []).append(name)
    layer = sorted(name for name, count in waiting.items() if count == 0)
    out: list[list[str]] = []
    placed = 0
    while layer:
        out.append(layer)
        placed += len(layer)
        ready = []
        for name in layer:
            for dependent in dependents.get(name, ()):
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    ready.append(dependent)
        layer = sorted(ready)
    if placed < len(deps):
        cycle = find_cycle(graph) or sorted(n for n, count in waiting.items() if count)
        raise CorralError(
            f"dependency cycle: {' -> '.join(cycle)}", "remove one of these depends_on entries"
        )
    return out


def start_order(manifest: _Fleet) -> list[list[str]]:
    """Agents in layers: everything in one layer may start concurrently."""
    return layers(edges(manifest))


def stop_order(manifest: _Fleet) -> list[list[str]]:
    """Dependents stop before what they depend on: the start layers reversed."""
    return list(reversed(start_order(manifest)))


def with_dependencies(manifest: _Fleet, names: Iterable[str]) -> set[str]:
    """``names`` and every agent they depend on, directly or through others."""
    graph = edges(manifest)
    found: set[str] = set()
    todo = list(names)
    while todo:
        agent = todo.pop()
        if agent not in found:
            found.add(agent)
            todo.extend(graph.get(agent, ()))
    return found


def dependents(manifest: _Fleet, name: str) -> set[str]:
    """Every agent that depends on ``name``, directly or through others."""
    reverse: dict[str, set[str]] = {}
    for agent, targets in edges(manifest).items():
        for target in targets:
            reverse.setdefault(target, set()).add(agent)
    found: set[str] = set()
    todo = [name]
    while todo:
        for agent in reverse.get(todo.pop(), set()):
            if agent not in found:
                found.add(agent)
                todo.append(agent)
    found.discard(name)
    return found


def _condition_problem(path: str, target: str, condition: str, agent: Agent) -> str | None:
    if condition == "healthy" and agent.readiness is None and agent.liveness is None:
        return (
            f"{path}: condition healthy, but {target} has no health check "
            f"(add readiness: to {target} or use condition: started)"
        )
    if condition == "log_ready" and agent.ready_log_line is None:
        return (
            f"{path}: condition log_ready, but {target} has no ready_log_line "
            f"(add ready_log_line: REGEX to {target} or use condition: started)"
        )
    if condition in COMPLETION and agent.restart.policy in NEVER_COMPLETES:
        return (
            f"{path}: condition {condition}, but {target} has restart: {agent.restart.policy} "
            f"and never completes (give {target} restart: on-failure or no, "
            "or use condition: started)"
        )
    return None


def raw_graph(agents: Mapping[Any, Any]) -> dict[str, list[str]]:
    """The graph of a not yet validated ``agents:`` mapping (any ``depends_on`` shortcut)."""
    out: dict[str, list[str]] = {}
    for name, spec in agents.items():
        deps = spec.get("depends_on") if isinstance(spec, dict) else None
        deps = [deps] if isinstance(deps, str) else deps
        out[str(name)] = [str(d) for d in deps] if isinstance(deps, (list, dict)) else []
    return out


def dependency_problems(agents: Mapping[str, Agent], graph: Graph) -> list[str]:
    """Unknown targets and cycles in ``graph`` (every agent, valid or not), and unmeetable
    conditions among ``agents`` (the ones that validated)."""
    # hints imports pydantic: the daemon (which only orders stops) must not pay for it
    from corral.manifest.hints import did_you_mean

    out: list[str] = []
    names = sorted(graph)
    unknown = 0
    for name, targets in graph.items():
        for target in targets:
            path = f"agents.{name}.depends_on.{target}"
            if target not in graph:
                unknown += 1
                hint = ""
                if unknown <= HINTED:  # a suggestion scans every name: only for the first few
                    choices = [k for k in names if k != name]
                    shown = ", ".join(choices[:HINTED]) + (", ..." if len(choices) > HINTED
                                                           else "")
                    hint = did_you_mean(target, choices) or (
                        f" (agents defined: {shown})" if choices else " (define it)")
                out.append(f"{path}: unknown agent{hint}")
            elif name in agents and target in agents:
                dep = agents[name].depends_on[target]
                problem = _condition_problem(path, target, dep.condition, agents[target])
                if problem:
                    out.append(problem)
    for cycle in find_cycles(graph, limit=HINTED):
        out.append(
            f"dependency cycle: {' -> '.join(cycle)} (remove one of these depends_on entries)"
        )
    return out
