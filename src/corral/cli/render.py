"""What people read: the ps table, prefixed log lines, state lines, colours."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: `corral ps` and `corral start` import this module
if TYPE_CHECKING:
    from typing import Any

_PALETTE = [36, 33, 32, 35, 34, 96, 93, 92, 95, 94]
_STATE_COLOR = {"running": 32, "exited": 37, "fatal": 31, "blocked": 31, "backoff": 33,
                "stopped": 37, "waiting": 36, "preparing": 36, "starting": 36, "stopping": 33}
_LEVEL_COLOR = {"warn": 33, "error": 31, "fatal": 31, "debug": 90}


# bidi embeddings, overrides and isolates; the line and paragraph separators
_REORDERING = (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029)
_escapes: dict[int, str] = {}


def printable(text: str) -> str:
    """``text`` with what would act on a terminal instead of showing on it escaped, as
    journalctl does: C0 controls but tab (ESC, BEL, CR, LF, backspace...), DEL and the C1
    controls (U+0080-U+009F, which terminals read as CSI, OSC... in their UTF-8 form too) as
    ``\\xNN``; the bidirectional overrides and isolates (text shown in another order than
    it is), the Unicode line separators and lone surrogates (unwritable to a UTF-8 stream)
    as ``\\uNNNN``. An agent's output can then neither retitle the window, clear the
    screen, move the cursor, nor fake a line of another instance. The store and ``--json``
    keep the raw text."""
    if text.isprintable():  # the common case: one C-speed scan, nothing to do
        return text
    if not _escapes:
        _escapes.update({c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))
                         if c != 0x09})
        _escapes.update({c: f"\\u{c:04x}" for c in (*_REORDERING, *range(0xD800, 0xE000))})
    return text.translate(_escapes)


def use_color(disabled: bool) -> bool:
    return not disabled and sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _c(text: str, code: int, on: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if on else text


def _color_of(name: str) -> int:
    return _PALETTE[sum(name.encode()) % len(_PALETTE)]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def last_exit(row: dict[str, Any]) -> str:
    if row.get("oom_killed"):
        return "OOM"
    if row["exit_signal"] is not None:
        return f"sig {row['exit_signal']}"
    return "-" if row["exit_code"] is None else str(row["exit_code"])


def one_line(text: str) -> str:
    """A multi-line text (a build's error output) as its first line and an ellipsis: the
    table and the summaries keep one line an instance; ``ps --json`` has the whole text."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return printable(text.strip())
    return printable(lines[0].rstrip()) + " …"


def _last_run(schedule: dict[str, Any], now: float) -> str:
    run = schedule["last_run"]
    if run is None:
        return "-"
    return f"#{run['run']} {run['status']} {duration(now - run['started_at'])} ago"


def _next_run(schedule: dict[str, Any], now: float) -> str:
    at = schedule["next_run"]
    if not schedule["active"]:
        return "paused"  # `corral stop` or `down`: until `start` or `up`
    return "-" if at is None else f"in {duration(max(0.0, at - now))}"


def _aligned(head: list[str], body: list[list[str]], *, state: int, color: bool) -> list[str]:
    """The head and the rows in columns as wide as their widest cell; column ``state``
    coloured by the state it names."""
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    for b in body:
        cells = [v.ljust(w) for v, w in zip(b, widths, strict=True)]
        cells[state] = _c(cells[state], _STATE_COLOR.get(b[state], 0), color)
        lines.append("  ".join(cells).rstrip())
    return lines


def table(rows: list[dict[str, Any]], *, color: bool) -> str:
    head = ["NAME", "STATE", "ISOLATION", "PID", "UPTIME", "RESTARTS", "HEALTH", "LAST EXIT",
            "PORTS", "REASON"]
    body = [[r["name"], r["state"], r.get("isolation") or "-", str(r["pid"] or "-"),
             duration(r["uptime"]), str(r["restarts"]), r["health"], last_exit(r),
             ",".join(r.get("ports") or ()) or "-", one_line(r["reason"] or "")]
            for r in rows]
    if any(r.get("schedule") for r in rows):  # scheduled agents: their last and next run
        import time

        now = time.time()
        head[-1:-1] = ["LAST RUN", "NEXT RUN"]
        for r, b in zip(rows, body, strict=True):
            s = r.get("schedule")
            b[-1:-1] = [_last_run(s, now), _next_run(s, now)] if s else ["-", "-"]
    if any(r.get("node_ip") or r.get("node") for r in rows):  # placed on a cluster
        head[3:3] = ["NODE"]
        for r, b in zip(rows, body, strict=True):
            b[3:3] = [_node(r)]
    lines = _aligned(head, body, state=1, color=color)
    weak = sorted({str(r["limits"]) for r in rows if str(r.get("limits")).startswith("rlimit")})
    lines.extend(f"limits: {w}: per-process rlimits only; detached processes are found by "
                 "a /proc scan" for w in weak)
    return "\n".join(lines) + "\n"


def _node(row: dict[str, Any]) -> str:
    """A cluster node as ps shows it: its IP, and its id's first characters (two nodes of a
    test cluster often share an IP)."""
    ip, node = row.get("node_ip"), row.get("node")
    if not (ip or node):
        return "-"
    return f"{ip or '?'} ({node[:8]})" if node else str(ip)


def pods_table(rows: list[dict[str, Any]], *, color: bool) -> str:
    """``corral ps`` of a fleet in a cluster: a pod (or a workload without one) a line."""
    head = ["NAME", "AGENT", "STATE", "READY", "RESTARTS", "NODE", "UPTIME", "REASON"]
    body = [[r["name"], r["agent"] or "-", r["state"], r["ready"], str(r["restarts"]),
             r["node"], duration(r["uptime"]), one_line(r["reason"] or "")] for r in rows]
    return "\n".join(_aligned(head, body, state=2, color=color)) + "\n"


def runs_table(runs: list[dict[str, Any]]) -> str:
    """``corral ps --all``: the scheduled runs kept, oldest first."""
    import time

    def when(at: float | None) -> str:
        return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))

    head = ["NAME", "RUN", "TRIGGER", "STARTED", "ENDED", "EXIT", "STATUS"]
    body = [[r["instance"], str(r["run"]), r["trigger"], when(r["started_at"]),
             when(r["ended_at"]), "-" if r["exit_code"] is None else str(r["exit_code"]),
             r["status"]] for r in runs]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
                     for line in [head, *body]) + "\n"


def summary_line(row: dict[str, Any]) -> str:
    extra = f" ({one_line(row['reason'])})" if row["reason"] else ""
    pid = f" pid {row['pid']}" if row["pid"] else ""
    return f"{row['name']}: {row['state']}{pid}{extra}"


def format_line(rec: dict[str, Any], *, width: int, color: bool, raw: bool = False,
                timestamps: bool = False) -> str:
    """``name | message key=value…``: the fields of the agent's own (a JSON line's) follow the
    message; ``timestamps``: its time (RFC 3339, UTC) first, as compose's ``-t``. A message of
    several lines (a traceback) is shown line by line, each with the prefix, so no line can
    pass for another instance's. Control characters are escaped (``printable``) unless
    ``raw``."""
    import json  # here: `corral ps` imports this module and never needs it

    from corral.logs.fields import RESERVED

    name = printable(str(rec.get("instance", rec.get("agent", "?"))))
    prefix = _c(f"{name.ljust(width)} |", _color_of(name), color)
    if timestamps:
        prefix = f"{prefix} {_when(rec.get('timestamp', rec.get('ts')))}"
    message = str(rec.get("message", ""))
    own = " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
                   for k, v in rec.items() if k not in RESERVED)
    message = f"{message} {own}" if message and own else message or own
    level = rec.get("level")
    shown = []
    for line in message.split("\n"):
        line = line if raw else printable(line)
        if color and level in _LEVEL_COLOR:
            line = _c(line, _LEVEL_COLOR[str(level)], True)
        shown.append(f"{prefix} {line}")
    return "\n".join(shown)


def _when(value: object) -> str:
    """A record's time as stored (RFC 3339 text), or converted from older files' seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        from corral.logs.stamps import rfc3339

        return rfc3339(value)
    return printable(str(value))


def state_line(event: dict[str, Any], *, width: int, color: bool) -> str:
    name = printable(str(event.get("name", "?")))
    prefix = _c(f"{name.ljust(width)} |", _color_of(name), color)
    text = f"[{event['state']}]"
    if event.get("health") in ("healthy", "unhealthy"):
        text += f" {event['health']}"
    if event.get("reason"):
        text += f" {one_line(str(event['reason']))}"
    return f"{prefix} {_c(text, _STATE_COLOR.get(str(event['state']), 0), color)}"


def instance_names(manifest: Any) -> list[str]:
    return [f"{a}.{i}" for a, s in manifest.agents.items() for i in range(1, s.replicas + 1)]


class Attached:
    """A one-off's output (``corral run`` of a container or vm agent) straight to this
    terminal, as the agent wrote it: an attached run is the user's own program."""

    def feed(self, stream: str, data: bytes) -> None:
        out = sys.stdout if stream == "stdout" else sys.stderr
        out.buffer.write(data)
        out.flush()

    def eof(self, stream: str) -> None:
        pass
