"""The nightly training job: fits a ridge regression of each experiment's score on its
hyper-parameters, stores the coefficients in Postgres (``models``) and on the models volume,
and caches the latest ones in Redis for the notebook. One-shot: exits 0 when done, non-zero
when it cannot reach its data, so the scheduler records a failed run.

Today it runs on this machine; the cloud trainer it is meant for later gets the same
environment (PG*, REDIS_URL, MODEL_DIR) and this same file."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import psycopg
import redis

FEATURES = ("learning_rate", "depth", "dropout")
SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
  id serial PRIMARY KEY, learning_rate real NOT NULL, depth int NOT NULL,
  dropout real NOT NULL, score real NOT NULL, at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS models (
  id serial PRIMARY KEY, coefficients jsonb NOT NULL, rows int NOT NULL,
  rmse real NOT NULL, at timestamptz DEFAULT now());
"""


def log(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def fit(rows: list[tuple[float, ...]], alpha: float = 1e-2) -> tuple[np.ndarray, float]:
    data = np.asarray(rows, dtype=float)
    x = np.column_stack([np.ones(len(data)), data[:, :-1]])
    y = data[:, -1]
    beta = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ y)
    rmse = float(np.sqrt(np.mean((x @ beta - y) ** 2)))
    return beta, rmse


def main() -> int:
    started = time.monotonic()
    with psycopg.connect(connect_timeout=10) as conn:  # PGHOST, PGPASSWORD... from corral
        conn.execute(SCHEMA)
        rows = conn.execute(f"SELECT {', '.join(FEATURES)}, score FROM experiments").fetchall()
        if len(rows) < len(FEATURES) + 1:
            log("skipped", reason="too few experiments to fit", rows=len(rows))
            return 0
        beta, rmse = fit(rows)
        coefficients = dict(zip(("intercept", *FEATURES), map(float, beta), strict=True))
        conn.execute("INSERT INTO models (coefficients, rows, rmse) VALUES (%s, %s, %s)",
                     (json.dumps(coefficients), len(rows), rmse))
    model_dir = os.environ.get("MODEL_DIR", "models")
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "latest.json"), "w", encoding="utf-8") as f:
        json.dump({"coefficients": coefficients, "rmse": rmse, "rows": len(rows)}, f)
    redis.Redis.from_url(os.environ["REDIS_URL"]).set("model:latest", json.dumps(coefficients))
    took = round(time.monotonic() - started, 2)
    log("trained", rows=len(rows), rmse=round(rmse, 4), seconds=took)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (psycopg.OperationalError, redis.ConnectionError) as exc:
        log("failed", reason=str(exc).strip())
        sys.exit(1)
