"""Pod logs into corral's log store. No follower runs between commands: ``corral logs``
(and each round of ``logs -f``) asks every pod of the project for its log since the last
record stored for that pod (``sinceTime``, timestamps on), and appends the new lines to
``STATE/logs/AGENT.log`` as records with ``pod`` and ``node`` added; ``corral logs`` then
reads the store with its usual filters. A detached follower would outlive a lost terminal
and need its PID kept and killed; the kubelet keeps the logs meanwhile, so fetching on
demand loses only what the kubelet rotated away (the report of ``down`` names none)."""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

from corral.targets.kubernetes.apply import AGENT, selector

if TYPE_CHECKING:
    from corral.targets.kubernetes.cluster import Cluster


def _cursors_path(state_dir: str) -> str:
    return os.path.join(state_dir, "kubernetes-log-cursors.json")


def _load(state_dir: str) -> dict[str, str]:
    try:
        with open(_cursors_path(state_dir), encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(state_dir: str, cursors: dict[str, str]) -> None:
    tmp = _cursors_path(state_dir) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(cursors, f)
    os.replace(tmp, _cursors_path(state_dir))


def _split(line: str) -> tuple[float, str, str] | None:
    """``2026-12-02T14:03:05.123456789Z text`` (the kubelet's form with timestamps=true)
    as (unix seconds, the stamp as sent, text)."""
    stamp, _, text = line.partition(" ")
    head = stamp.rstrip("Z")
    whole, _, frac = head.partition(".")
    try:
        ts = datetime.fromisoformat(whole + "+00:00").timestamp()
    except ValueError:
        return None
    return ts + (float(f"0.{frac}") if frac.isdigit() else 0.0), stamp, text


def records(agent: str, pod: str, node: str, text: str, after: str) -> tuple[bytes, str]:
    """The store's records of the lines of ``text`` stamped after ``after`` (an RFC 3339
    stamp as the kubelet sent it), and the last stamp seen."""
    from corral.logs.records import LineEncoder
    from corral.logs.stamps import quoted

    encoder = LineEncoder(agent, pod, "stdout")
    out: list[bytes] = []
    last = after
    seen = _split(f"{after} -") if after else None
    for line in text.splitlines():
        parsed = _split(line)
        if parsed is None:
            continue
        ts, stamp, message = parsed
        if seen is not None and ts <= seen[0]:
            continue  # sinceTime is whole seconds: the records of that second came before
        rec = json.loads(encoder.encode_line(message, quoted(ts)))
        rec["pod"], rec["node"] = pod, node
        out.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        last = stamp
    return b"".join(out), last


def fetch(cluster: Cluster, project_label: str, state_dir: str, log_dir: str,
          agents: list[str] | None = None) -> int:
    """New lines of every pod (of ``agents``) into the store; how many records."""
    from corral.logs.sink import AgentLog

    pods = cluster.call("GET", f"/api/v1/namespaces/{cluster.namespace}/pods",
                        [("labelSelector", selector(project_label))]).get("items") or []
    cursors = _load(state_dir)
    count = 0
    for pod in pods:
        meta: dict[str, Any] = pod["metadata"]
        agent = (meta.get("labels") or {}).get(AGENT, "")
        if not agent or (agents and agent not in agents):
            continue
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        name, after = meta["name"], cursors.get(meta["name"], "")
        query: list[tuple[str, Any]] = [("timestamps", "true")]
        if containers[0].get("name"):
            query.append(("container", containers[0]["name"]))
        if after:
            query.append(("sinceTime", after.partition(".")[0].rstrip("Z") + "Z"))
        response = cluster.call("GET", f"/api/v1/namespaces/{cluster.namespace}/pods/"
                                f"{name}/log", query, raw=True)
        text = response.data.decode("utf-8", "replace")
        data, last = records(agent, name, (pod.get("spec") or {}).get("nodeName") or "-",
                             text, after)
        if data:
            log = AgentLog(log_dir, agent)
            try:
                log.write([data])
            finally:
                log.close()
            count += data.count(b"\n")
        cursors[name] = last
    os.makedirs(state_dir, exist_ok=True)
    _save(state_dir, cursors)
    return count
