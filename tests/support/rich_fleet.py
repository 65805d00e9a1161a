"""A fleet that uses every field the Kubernetes export maps, for its unit and e2e tests."""

from __future__ import annotations

from pathlib import Path

RICH = """\
name: rich
metrics: {port: 9464}
secrets:
  db_password: {environment: RICH_DB_PASSWORD}
  api_key: {file: api.key}
  unused: {environment: NOBODY}
agents:
  db:
    class: service
    isolation: container
    container: {image: docker.io/library/postgres:16, ports: ["15432:5432"]}
    command: postgres -c fsync=off
    readiness: {tcp: 5432, period: 2s, timeout: 1.5s, failure_threshold: 5,
                success_threshold: 2, initial_delay: 1s}
    liveness: {exec: pg_isready -q, period: 10s}
    resources: {cpus: 1.5, memory: 512m, memory_reservation: 256m, pids: 200}
    stop: {signal: SIGINT, timeout: 30s}
    volumes: ["dbdata:/var/lib/postgresql/data", "./conf:/etc/app:ro"]
    secrets:
      - {source: db_password, env: POSTGRES_PASSWORD}
      - {source: api_key, target: api.key}
  migrate:
    class: compute
    command: python3 -c "print('migrated')"
    restart: {policy: on-failure, max_restarts: 4}
    depends_on:
      db: {condition: healthy}
  my_web:
    class: io
    command: python3 -m http.server 8000
    port: 8000
    replicas: 3
    env: {GREETING: hello}
    env_file: [web.env]
    liveness: {http: {port: 8000, path: /health}, period: 5s}
    readiness: {heartbeat: beat, within: 20s}
    depends_on:
      migrate: {condition: completed_successfully}
      idle: {condition: started}
    labels: {tier: front}
  idle:
    command: sleep infinity
    trust: untrusted
  nightly:
    class: compute
    command: python3 -c "print('report')"
    schedule: {cron: "0 3 * * *", timezone: Europe/Paris, overlap: queue}
  hourly:
    class: compute
    command: python3 -c "print('tick')"
    schedule: {every: 2h, catch_up: true}
  lonely:
    isolation: sandbox
    command: sleep infinity
  pair-a:
    isolation: sandbox
    network: loopback:duo
    command: python3 -m http.server 9000
    port: 9000
  pair-b:
    isolation: sandbox
    network: loopback:duo
    command: sleep infinity
    liveness: {silence: 5m}
"""


def write(directory: Path) -> Path:
    (directory / "conf").mkdir(exist_ok=True)
    (directory / "api.key").write_text("s3cret-key\n")
    (directory / "web.env").write_text("FROM_FILE=yes\n")
    path = directory / "corral.yaml"
    path.write_text(RICH)
    return path
