"""What the feeds' threads and the key workers tell ``corral top``'s app: Textual messages,
posted from any thread, handled in the app's loop (``on_fleet_rows``...)."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from corral.errors import CorralError


class FleetRows(Message):
    """The daemon's whole status, asked for after ``asked_at`` state events (None: read on
    the state stream, in its order); ``usage`` sampled with it at monotonic time ``at``."""

    def __init__(self, rows: list[dict[str, Any]], asked_at: int | None = None,
                 usage: dict[str, tuple[float, int]] | None = None, at: float = 0.0) -> None:
        super().__init__()
        self.rows, self.asked_at, self.usage, self.at = rows, asked_at, usage, at


class StateChanged(Message):
    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__()
        self.row = row


class LogRecords(Message):
    """Records wait in the app's inbox: one message wakes it for all that came meanwhile."""


class Notice(Message):
    def __init__(self, text: str, *, error: bool = False) -> None:
        super().__init__()
        self.text, self.error = text, error


class StreamEnded(Message):
    def __init__(self, problem: CorralError) -> None:
        super().__init__()
        self.problem = problem
