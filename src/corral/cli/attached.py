"""How an attached ``up`` ends: Ctrl-C, and compose's ``--abort-on-container-exit`` and
``--exit-code-from AGENT``: the first instance of a followed agent to end by itself (exited,
or fatal: it will not be restarted) stops the fleet, and ``up`` exits with that instance's
exit code, or with the named agent's. Either stops what the ``up`` started: the whole fleet
and its daemon, or with ``up AGENT...`` those instances (the daemon goes too when nothing
else is left running).
"""

from __future__ import annotations

import sys

from corral.cli import daemonctl

TYPE_CHECKING = False  # not typing's: every command pays for what a module imports
if TYPE_CHECKING:
    from typing import Any

ENDED = ("exited", "fatal")
_AT_REST = ("stopped", "exited", "fatal")


def stop_fleet(client: Any, state_dir: str, scope: list[str] | None) -> list[dict[str, Any]]:
    """Stop the fleet (``scope`` None) or those instances; the instances' rows after."""
    if scope:
        client.stop(scope)
    else:
        client.down()
    rows: list[dict[str, Any]] = client.instances()
    if not scope or all(r["state"] in _AT_REST for r in rows):
        pid = daemonctl.daemon_pid(state_dir)
        client.shutdown(timeout=600)
        daemonctl.wait_gone(pid, 60)
    return rows


def exit_status(row: dict[str, Any]) -> int:
    """An instance's end as a shell's exit status: its code, 128 + the signal that killed
    it, 1 when it never ran (fatal before a start), else 0."""
    if row.get("exit_code") is not None:
        return int(row["exit_code"])
    if row.get("exit_signal"):
        return 128 + int(row["exit_signal"])
    return 1 if row.get("state") == "fatal" else 0


class Abort:
    def __init__(self, client: Any, agents: list[str], exit_code_from: str | None,
                 report: dict[str, list[str]], scope: list[str] | None) -> None:
        self.client = client
        self.agents = set(agents)  # followed; all when empty
        self.exit_code_from = exit_code_from
        self.launched = {*report["started"], *report["recreated"]}
        self.scope = scope
        self.first: dict[str, Any] | None = None

    def ends(self, event: dict[str, Any]) -> bool:
        """Whether this state event is a followed instance ending by itself."""
        if event.get("state") not in ENDED:
            return False
        if self.agents and event.get("agent") not in self.agents:
            return False
        self.first = event
        return True

    def already_ended(self) -> bool:
        """An instance this ``up`` launched that ended before the events were followed."""
        for row in self.client.instances():
            if row["name"] in self.launched and self.ends(row):
                return True
        return False

    def stop_fleet(self, state_dir: str) -> int:
        """As Ctrl-C of an attached ``up`` (``stop_fleet``); the exit status compose's rule
        gives."""
        assert self.first is not None
        name = self.first["name"]
        print(f"{name} exited with code {exit_status(self.first)}", file=sys.stderr)
        print("Aborting on container exit...", file=sys.stderr)
        rows = stop_fleet(self.client, state_dir, self.scope)
        if self.exit_code_from is None:
            return exit_status(self.first)
        if self.first.get("agent") == self.exit_code_from:
            return exit_status(self.first)
        mine = [r for r in rows if r["agent"] == self.exit_code_from]
        return exit_status(mine[0]) if mine else 1
