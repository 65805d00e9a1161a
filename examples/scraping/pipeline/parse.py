"""A parser of the pool: takes a page from ``pages``, extracts its title, text and links, and
stores them as one JSON document in the bucket (the key: a hash of the URL)."""

from __future__ import annotations

import hashlib
import json
import os
from html.parser import HTMLParser

import boto3
from prometheus_client import Counter, start_http_server

from amqp import channel, log, metrics_port

PARSED = Counter("parser_documents_total", "documents stored")
ERRORS = Counter("parser_errors_total", "pages that could not be stored")


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.title, self.links, self.text, self._in_title = "", [], [], False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_title = tag == "title"
        if tag == "a":
            self.links += [v for k, v in attrs if k == "href" and v]

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False if tag == "title" else self._in_title

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif data.strip():
            self.text.append(data.strip())


def main() -> None:
    s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"],
                      aws_access_key_id=os.environ["S3_ACCESS_KEY"],
                      aws_secret_access_key=os.environ["S3_SECRET_KEY"])
    bucket = os.environ["S3_BUCKET"]
    if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=bucket)
    start_http_server(metrics_port(), addr="127.0.0.1")

    def on_page(ch, method, props, body: bytes) -> None:  # type: ignore[no-untyped-def]
        url = (props.headers or {}).get("url", "")
        page = Page()
        page.feed(body.decode("utf-8", "replace"))
        doc = {"url": url, "title": page.title.strip(), "links": page.links[:500],
               "text": " ".join(page.text)[:100_000]}
        key = hashlib.sha256(url.encode()).hexdigest() + ".json"
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode(),
                          ContentType="application/json")
        except Exception as exc:  # botocore's errors: counted, the page requeued
            ERRORS.inc()
            log("store_failed", url=url, reason=str(exc))
            ch.basic_nack(method.delivery_tag, requeue=True)
            return
        PARSED.inc()
        log("stored", url=url, key=key, links=len(doc["links"]))
        ch.basic_ack(method.delivery_tag)

    ch = channel()
    ch.basic_consume("pages", on_page)
    log("consuming", queue="pages")
    ch.start_consuming()


if __name__ == "__main__":
    main()
