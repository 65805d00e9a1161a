"""Helpers the notebooks import: record an experiment's result in Postgres and read the model
the nightly job fitted from Redis (``import experiments`` in a notebook of this directory)."""

from __future__ import annotations

import json
import os

import psycopg
import redis


def record(learning_rate: float, depth: int, dropout: float, score: float) -> int:
    """Store one run's hyper-parameters and score; the id of its row."""
    with psycopg.connect() as conn:  # PGHOST, PGUSER, PGPASSWORD... from corral
        row = conn.execute(
            "INSERT INTO experiments (learning_rate, depth, dropout, score) "
            "VALUES (%s, %s, %s, %s) RETURNING id",
            (learning_rate, depth, dropout, score)).fetchone()
    assert row is not None
    return int(row[0])


def latest_model() -> dict[str, float] | None:
    """The coefficients of the last training run, None before the first one."""
    raw = redis.Redis.from_url(os.environ["REDIS_URL"]).get("model:latest")
    return None if raw is None else dict(json.loads(raw))
