"""A scraper replica: takes a URL from ``urls``, fetches it, puts the page on ``pages`` (the
URL in a header); counts pages and errors for Prometheus."""

from __future__ import annotations

import urllib.error
import urllib.request

import pika
from prometheus_client import Counter, start_http_server

from amqp import channel, log, metrics_port

PAGES = Counter("scraper_pages_total", "pages fetched")
ERRORS = Counter("scraper_errors_total", "fetches that failed", ["kind"])
LIMIT = 2 * 1024 * 1024  # bytes read per page


def on_url(ch, method, _props, body: bytes) -> None:  # type: ignore[no-untyped-def]
    url = body.decode()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "corral-example/1"})
        with urllib.request.urlopen(request, timeout=20) as response:
            page = response.read(LIMIT)
    except (urllib.error.URLError, TimeoutError, ValueError) as exc:
        ERRORS.labels(type(exc).__name__).inc()
        log("fetch_failed", url=url, reason=str(exc))
    else:
        ch.basic_publish("", "pages", page, pika.BasicProperties(
            delivery_mode=2, headers={"url": url}, content_type="text/html"))
        PAGES.inc()
        log("fetched", url=url, bytes=len(page))
    ch.basic_ack(method.delivery_tag)


def main() -> None:
    start_http_server(metrics_port(), addr="127.0.0.1")
    ch = channel()
    ch.basic_consume("urls", on_url)
    log("consuming", queue="urls")
    ch.start_consuming()


if __name__ == "__main__":
    main()
