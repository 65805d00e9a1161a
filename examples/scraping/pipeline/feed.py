"""The scheduled feeder: one message per URL of the file named on the command line."""

from __future__ import annotations

import sys

import pika

from amqp import channel, log


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        urls = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    ch = channel()
    for url in urls:
        ch.basic_publish("", "urls", url.encode(), pika.BasicProperties(delivery_mode=2))
    ch.connection.close()
    log("fed", urls=len(urls))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
