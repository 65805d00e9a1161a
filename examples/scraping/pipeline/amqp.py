"""The connection every agent of the pipeline opens to RabbitMQ, from the variables corral
gives it (AMQP_HOST, AMQP_PORT, AMQP_USER, AMQP_PASSWORD), and one JSON log line per event."""

from __future__ import annotations

import json
import os
import sys
import time

import pika

QUEUES = ("urls", "pages")


def log(event: str, **fields: object) -> None:
    print(json.dumps({"t": round(time.time(), 3), "event": event, **fields}), file=sys.stdout,
          flush=True)


def channel() -> pika.adapters.blocking_connection.BlockingChannel:
    params = pika.ConnectionParameters(
        host=os.environ["AMQP_HOST"], port=int(os.environ["AMQP_PORT"]),
        credentials=pika.PlainCredentials(os.environ["AMQP_USER"], os.environ["AMQP_PASSWORD"]),
        heartbeat=60)
    ch = pika.BlockingConnection(params).channel()
    for name in QUEUES:
        ch.queue_declare(queue=name, durable=True)
    ch.basic_qos(prefetch_count=1)
    return ch


def metrics_port() -> int:
    """Each instance its own port: the base plus its index (CORRAL_INSTANCE_INDEX, from 1)."""
    return int(os.environ["METRICS_BASE_PORT"]) + int(os.environ.get("CORRAL_INSTANCE_INDEX", "1"))
