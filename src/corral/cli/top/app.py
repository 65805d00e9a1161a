"""The Textual application of ``corral top``: the fleet's table over the selected agent's logs.

The table changes on the daemon's state events (``feeds.fleet_states``) and on a slow poll of
its status and usage samples (CPU, memory, uptime; instances removed), never on a busy loop.
The log pane follows the agent of the selected row. Each key goes through the protocol calls
the CLI makes (``restart``, ``stop``, ``start``, ``scale``), in a worker thread, so a slow
reply never freezes the screen.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Log

from corral.cli import daemonctl, render
from corral.cli.top import feeds
from corral.cli.top.fleet import COLUMNS, Fleet, usage_samples
from corral.cli.top.messages import FleetRows, LogRecords, Notice, StateChanged, StreamEnded
from corral.errors import CorralError

POLL = 2.0  # seconds between two samples of status and usage
TAIL = 200  # records of the agent's history shown when it is selected
_STATE_STYLE = {"running": "green", "exited": "bright_black", "fatal": "red", "blocked": "red",
                "backoff": "yellow", "stopped": "bright_black", "stopping": "yellow"}


class FilterInput(Input):
    """The name filter: Enter keeps it, Escape clears it; both go back to the table."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "clear", "Clear filter")]

    def action_clear(self) -> None:
        self.value = ""
        self.post_message(self.Submitted(self, ""))


class TopApp(App[None]):
    TITLE = "corral top"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #fleet { height: 3fr; }
    #logs { height: 2fr; border-top: solid $accent; }
    #filter { display: none; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "restart", "Restart"),
        Binding("s", "stop", "Stop"),
        Binding("S", "start", "Start"),
        Binding("plus", "scale(1)", "Scale +", key_display="+"),
        Binding("minus", "scale(-1)", "Scale -", key_display="-"),
        # a priority: it takes the focus before the keys typed after it reach the table
        Binding("slash", "filter", "Filter", key_display="/", priority=True),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "interrupt", "Quit", show=False, priority=True),  # as in top
    ]

    def __init__(self, state_dir: str, project: str | None = None) -> None:
        super().__init__()
        self.state_dir = state_dir
        self.socket_path = daemonctl.client(state_dir).socket_path
        self.fleet = Fleet()
        self.name_filter = ""
        self.problem: CorralError | None = None  # why the app ended by itself
        self.project = project or ""
        self.sub_title = self.project
        self._shown: list[str] = []
        self._cells: dict[str, tuple[str, ...]] = {}
        self._states: feeds.Feed | None = None
        self._logs: feeds.Feed | None = None
        self._retired: list[feeds.Feed] = []  # log feeds closed, their threads maybe not done
        self._inbox = feeds.Inbox()
        self._log_agent: str | None = None
        self._log_feed = 0  # the number of the log feed whose records are shown
        self._sampling = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            table: DataTable[Text] = DataTable(id="fleet", cursor_type="row")
            for key, heading in COLUMNS:
                table.add_column(heading, key=key)
            yield table
            yield FilterInput(placeholder="filter the instances by name (Enter keeps, "
                                          "Escape clears)", id="filter")
            yield Log(id="logs", max_lines=5000)
        yield Footer()

    # --- the daemon's streams --------------------------------------------------------------

    def on_mount(self) -> None:
        self._states = feeds.Feed(
            self.socket_path,
            feeds.fleet_states(lambda rows: self._post(FleetRows(rows)),
                               lambda row: self._post(StateChanged(row))),
            lambda problem: self._post(StreamEnded(problem)), "states").start()
        self.set_interval(POLL, self._sample)
        self.query_one("#fleet").focus()

    def on_unmount(self) -> None:
        for feed in (self._states, self._logs, *self._retired):
            if feed is not None:
                feed.close()

    def _post(self, message: Message) -> None:
        """From a feed's thread: the app may have gone meanwhile."""
        with contextlib.suppress(RuntimeError):  # its loop closed
            self.post_message(message)

    def _sample(self) -> None:
        if not self._sampling:
            self._sampling = True
            asked_at = self.fleet.events
            self.run_worker(lambda: self._sample_usage(asked_at), thread=True, group="sample")

    def _sample_usage(self, asked_at: int) -> None:
        try:
            client = daemonctl.client(self.state_dir, timeout=10)
            rows = client.instances()
            usage = usage_samples(client.metrics())
            self._post(FleetRows(rows, asked_at, usage, time.monotonic()))
        except CorralError:
            pass  # the daemon went: the state feed says so
        finally:
            self._sampling = False

    def on_fleet_rows(self, message: FleetRows) -> None:
        self.fleet.replace(message.rows, message.asked_at)
        if message.usage is not None:
            self.fleet.sample(message.usage, message.at)
        self._refresh_table()

    def on_state_changed(self, message: StateChanged) -> None:
        self.fleet.update(message.row)
        self._refresh_table()

    def on_stream_ended(self, message: StreamEnded) -> None:
        self.problem = message.problem
        self.exit(return_code=3)

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, severity="error" if message.error else "information",
                    markup=False)

    # --- the table -------------------------------------------------------------------------

    def _refresh_table(self) -> None:
        table: DataTable[Text] = self.query_one("#fleet", DataTable)
        names = self.fleet.shown(self.name_filter)
        now = time.time()
        if names != self._shown:
            selected = self.selected()
            table.clear()
            self._cells = {}
            for name in names:
                self._cells[name] = cells = self.fleet.cells(name, now)
                table.add_row(*map(_cell, COLUMNS, cells), key=name)
            self._shown = names
            if selected in names:
                table.move_cursor(row=names.index(selected))
        else:
            for name in names:
                cells = self.fleet.cells(name, now)
                for (key, _), old, new in zip(COLUMNS, self._cells[name], cells, strict=True):
                    if old != new:
                        table.update_cell(name, key, _cell((key, _), new),
                                          update_width=True)
                self._cells[name] = cells
        self._follow(self.selected())

    def selected(self) -> str | None:
        """The instance of the row under the cursor."""
        table: DataTable[Text] = self.query_one("#fleet", DataTable)
        if not self._shown or not 0 <= table.cursor_row < len(self._shown):
            return None
        return self._shown[table.cursor_row]

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._follow(self.selected())

    # --- the log pane ----------------------------------------------------------------------

    def _follow(self, instance: str | None) -> None:
        """Follow the logs of ``instance``'s agent, unless they are followed already."""
        row = self.fleet.rows.get(instance or "")
        agent = row["agent"] if row is not None else None
        if agent is None or agent == self._log_agent:
            return
        if self._logs is not None:
            self._logs.close(timeout=0)
            self._retired = [*(f for f in self._retired if f.alive()), self._logs]
        self._log_agent = agent
        self._log_feed += 1
        number = self._log_feed
        pane = self.query_one("#logs", Log)
        pane.clear()
        pane.border_title = f"logs of {agent}"
        self._logs = feeds.Feed(
            self.socket_path,
            feeds.agent_logs(agent, TAIL, lambda recs: self._records(number, recs)),
            lambda problem: self._post(Notice(f"logs of {agent}: {problem}", error=True)),
            f"logs-{agent}").start()

    def _records(self, feed: int, records: list[dict[str, Any]]) -> None:
        """From a log feed's thread."""
        if self._inbox.put([(feed, rec) for rec in records]):
            self._post(LogRecords())

    def on_log_records(self, message: LogRecords) -> None:
        width = max((len(n) for n in self.fleet.rows), default=8)
        self.query_one("#logs", Log).write_lines(
            line for feed, rec in self._inbox.take()
            if feed == self._log_feed  # else of a feed closed since: another agent is shown
            for line in render.format_line(rec, width=width, color=False).split("\n"))

    # --- the keys --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The fleet's keys act on the table, not while the filter is typed."""
        if action in ("restart", "stop", "start", "scale", "filter", "quit"):
            return not isinstance(self.focused, Input)
        return True

    def action_interrupt(self) -> None:
        self.exit()

    def action_restart(self) -> None:
        self._control("restart")

    def action_stop(self) -> None:
        self._control("stop")

    def action_start(self) -> None:
        self._control("start")

    def _control(self, verb: str) -> None:
        instance = self.selected()
        if instance is not None:
            self.run_worker(lambda: self._call(verb, instance), thread=True, group="control")

    def _call(self, verb: str, instance: str) -> None:
        client = daemonctl.client(self.state_dir, timeout=120)
        try:
            done = {"start": client.start, "stop": client.stop,
                    "restart": client.restart}[verb]([instance])
        except CorralError as exc:
            self._post(Notice(str(exc), error=True))
            return
        said = "stopped" if verb == "stop" else f"{verb} requested"
        self._post(Notice(", ".join(f"{name}: {said}" for name in done) or f"{instance}: "
                          f"nothing to {verb}"))

    def action_scale(self, step: int) -> None:
        row = self.fleet.rows.get(self.selected() or "")
        if row is None:
            return
        agent = row["agent"]
        # never below one: an agent scaled to none leaves the table, and no key brings it back
        replicas = max(1, self.fleet.agent_count(agent) + step)
        asked_at = self.fleet.events
        self.run_worker(lambda: self._scale(agent, replicas, asked_at), thread=True,
                        group="control")

    def _scale(self, agent: str, replicas: int, asked_at: int) -> None:
        client = daemonctl.client(self.state_dir, timeout=600)
        try:
            report = client.scale(agent, replicas)
            rows = client.instances()
        except CorralError as exc:
            self._post(Notice(str(exc), error=True))
            return
        self._post(FleetRows(rows, asked_at))
        self._post(Notice(f"{agent}: {replicas} replica{'s' if replicas != 1 else ''} "
                          f"(+{len(report['started'])} -{len(report['removed'])})"))

    def action_filter(self) -> None:
        box = self.query_one("#filter", FilterInput)
        box.display = True
        self.screen.set_focus(box)  # now, not at the next idle: the keys typed next are its

    @on(Input.Changed, "#filter")
    def _filter_typed(self, event: Input.Changed) -> None:
        self.name_filter = event.value
        shown = [self.project, f"filter: {event.value}" if event.value else ""]
        self.sub_title = " · ".join(part for part in shown if part)
        self._refresh_table()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.query_one("#filter", FilterInput).display = False
        self.screen.set_focus(self.query_one("#fleet"))


def _cell(column: tuple[str, str], value: str) -> Text:
    """A cell as plain text (an agent's reason is never read as markup); a state coloured."""
    return Text(value, style=_STATE_STYLE.get(value, "") if column[0] == "state" else "")
