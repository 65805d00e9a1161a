"""The durable state store: SQLite (WAL) holding the applied manifest and every instance's
last snapshot and driver handle, so a restarted daemon can re-adopt what still runs, and the
fleet's recent events (``runtime.journal``; the last ``MAX_EVENTS``).

Writes from one loop tick are batched into one transaction; a commit in WAL mode with
``synchronous=NORMAL`` does not fsync, so 500 state changes cost milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from typing import Any

from corral.lean.record import Record, record
from corral.runtime.views import Snapshot

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
  name TEXT PRIMARY KEY, agent TEXT NOT NULL, idx INTEGER NOT NULL, state TEXT NOT NULL,
  pid INTEGER, started_at REAL, restarts INTEGER NOT NULL, exit_code INTEGER,
  exit_signal INTEGER, oom INTEGER NOT NULL, reason TEXT NOT NULL, health TEXT NOT NULL,
  spec_hash TEXT NOT NULL, handle TEXT
);
CREATE TABLE IF NOT EXISTS runs (
  instance TEXT NOT NULL, number INTEGER NOT NULL, agent TEXT NOT NULL, trigger TEXT NOT NULL,
  started_at REAL NOT NULL, ended_at REAL, exit_code INTEGER, status TEXT NOT NULL,
  PRIMARY KEY (instance, number)
);
CREATE TABLE IF NOT EXISTS schedules (
  instance TEXT PRIMARY KEY, anchor REAL, active INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, agent TEXT NOT NULL, body TEXT NOT NULL);
"""
MAX_EVENTS = 10_000  # the oldest go first
RUNS_KEPT = 1000  # runs of history per instance


@record
class Run(Record):
    """One run of a scheduled agent's instance: its number (from 1), what made it (schedule,
    catch-up, start, queued, manual, restart), when, how it ended (status running, exited,
    failed, stopped, replaced, skipped, lost)."""

    instance: str
    number: int
    agent: str
    trigger: str
    started_at: float
    ended_at: float | None = None
    exit_code: int | None = None
    status: str = "running"


@record
class StoredInstance(Record):
    name: str
    agent: str
    index: int
    state: str
    restarts: int
    spec_hash: str
    handle: str | None
    exit_code: int | None
    reason: str


class Store:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._dirty: dict[str, Snapshot | None] = {}
        self._new_events: list[tuple[int, str, str]] = []
        row = self._db.execute("SELECT MAX(id) FROM events").fetchone()
        self._last_event = row[0] or 0
        self._scheduled = False

    def close(self) -> None:
        self.flush()
        self._db.close()

    def set_meta(self, key: str, value: Any) -> None:
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(key, json.dumps(value))])

    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def instances(self) -> dict[str, StoredInstance]:
        rows = self._db.execute(
            "SELECT name, agent, idx, state, restarts, spec_hash, handle, exit_code, reason "
            "FROM instances"
        ).fetchall()
        return {r[0]: StoredInstance(*r) for r in rows}

    def forget_fleet(self) -> None:
        """``down`` ended the fleet's generation: no instance, result or restart count of it
        is kept, and a daemon started later has nothing to re-adopt or rest on."""
        self._dirty.clear()
        try:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM instances")
            self._db.execute("DELETE FROM meta WHERE key IN ('manifest', 'held')")
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            print(f"corral: cannot clear the state store ({exc}); the next daemon may show "
                  "the stopped fleet: free disk space", file=sys.stderr)

    # --- scheduled runs: few, written at once --------------------------------------------

    def put_run(self, run: Run) -> None:
        try:
            self._write("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?)",
                        [(run.instance, run.number, run.agent, run.trigger, run.started_at,
                          run.ended_at, run.exit_code, run.status)])
            self._write("DELETE FROM runs WHERE instance = ? AND number <= ?",
                        [(run.instance, run.number - RUNS_KEPT)])
        except sqlite3.Error as exc:  # the run goes on; only its record is missing
            print(f"corral: cannot record run {run.number} of {run.instance} ({exc}): free "
                  "disk space", file=sys.stderr)

    def runs(self, instance: str | None = None) -> list[Run]:
        """Oldest first; every instance's without ``instance``."""
        where, args = ("WHERE instance = ?", (instance,)) if instance else ("", ())
        rows = self._db.execute(
            f"SELECT * FROM runs {where} ORDER BY started_at, instance, number", args)
        return [Run(*r) for r in rows.fetchall()]

    def last_run(self, instance: str) -> Run | None:
        row = self._db.execute("SELECT * FROM runs WHERE instance = ? ORDER BY number DESC "
                               "LIMIT 1", (instance,)).fetchone()
        return None if row is None else Run(*row)

    def put_schedule(self, instance: str, anchor: float | None, active: bool) -> None:
        try:
            self._write("INSERT OR REPLACE INTO schedules VALUES (?,?,?)",
                        [(instance, anchor, int(active))])
        except sqlite3.Error as exc:  # the schedule goes on; a catch-up may be missed
            print(f"corral: cannot record the schedule of {instance} ({exc}): free disk space",
                  file=sys.stderr)

    def schedule(self, instance: str) -> tuple[float | None, bool]:
        """(the last scheduled time, whether the schedule was on), or (None, False)."""
        row = self._db.execute("SELECT anchor, active FROM schedules WHERE instance = ?",
                               (instance,)).fetchone()
        return (None, False) if row is None else (row[0], bool(row[1]))

    def put(self, snap: Snapshot) -> None:
        self._dirty[snap.name] = snap
        self._schedule()

    def delete(self, name: str) -> None:
        self._dirty[name] = None
        self._schedule()

    def add_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Keep ``event`` (written with the tick's batch); returns it with its ``id``."""
        self._last_event += 1
        event = {"id": self._last_event, **event}
        self._new_events.append((self._last_event, event["agent"],
                                 json.dumps(event, separators=(",", ":"))))
        self._schedule()
        return event

    def events(self, agents: list[str] | None = None, tail: int | None = None
               ) -> list[dict[str, Any]]:
        """Kept events, oldest first: of ``agents`` (all when None), the last ``tail``."""
        self.flush()
        return query_events(self._db, agents, tail)

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not (self._dirty or self._new_events):
            return
        dirty, self._dirty = self._dirty, {}
        events, self._new_events = self._new_events, []
        puts = [
            (s.name, s.agent, s.index, s.state.value, s.pid, s.started_at, s.restarts,
             s.exit_code, s.exit_signal, int(s.oom_killed), s.reason, s.health.value,
             s.spec_hash, s.handle.to_json() if s.handle else None)
            for s in dirty.values() if s is not None
        ]
        gone = [(name,) for name, s in dirty.items() if s is None]
        try:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO instances VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", puts)
            self._db.executemany("DELETE FROM instances WHERE name = ?", gone)
            if events:
                self._db.executemany("INSERT OR REPLACE INTO events VALUES (?,?,?)", events)
                self._db.execute("DELETE FROM events WHERE id <= ?",
                                 (self._last_event - MAX_EVENTS,))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._dirty = {**dirty, **self._dirty}
            self._new_events = (events + self._new_events)[-MAX_EVENTS:]
            print(f"corral: cannot write the state store ({exc}); state is kept in memory "
                  "and written again on the next change: free disk space", file=sys.stderr)

    def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self._db.executemany(sql, rows)


def query_events(db: sqlite3.Connection, agents: list[str] | None, tail: int | None
                 ) -> list[dict[str, Any]]:
    where, args = "", list[Any](agents or [])
    if agents:
        where = f" WHERE agent IN ({','.join('?' * len(agents))})"
    sql = f"SELECT body FROM events{where} ORDER BY id"
    if tail is not None:
        sql = f"SELECT body FROM (SELECT id, body FROM events{where} ORDER BY id DESC LIMIT ?) " \
              "ORDER BY id"
        args.append(tail)
    return [json.loads(row[0]) for row in db.execute(sql, args)]


def read_events(path: str, agents: list[str] | None = None, tail: int | None = None
                ) -> list[dict[str, Any]]:
    """The events a store kept, read without its daemon (after ``down``); none when there is
    no store, or it has no events table yet."""
    import os
    from urllib.parse import quote

    if not os.path.exists(path):
        return []
    db = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
    try:
        return query_events(db, agents, tail)
    except sqlite3.OperationalError:  # a store from before events were kept
        return []
    finally:
        db.close()
