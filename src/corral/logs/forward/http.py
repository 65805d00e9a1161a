"""One keep-alive HTTP/1.1 connection per sink (the standard library's), and what its
answers mean for a batch: 2xx taken, 408/429/5xx or no answer retried, other 4xx rejected."""

from __future__ import annotations

import http.client
import ssl
import urllib.parse

from corral.logs.forward.base import Rejected, Retry

TIMEOUT = 10.0


class Poster:
    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.headers = dict(headers)
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.https:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=TIMEOUT, context=ssl.create_default_context()
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        return self._conn

    def post(self, body: bytes, content_type: str, path: str | None = None) -> bytes:
        """POST ``body``; the answer's body when the server took it."""
        where = path or self.path
        try:
            conn = self._connection()
            conn.request("POST", where, body, {**self.headers, "Content-Type": content_type})
            reply = conn.getresponse()
            data = reply.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Retry(
                f"POST {self.host}:{self.port}{where}: {exc or type(exc).__name__}"
            ) from None
        if reply.will_close:
            self.close()
        if 200 <= reply.status < 300:
            return data
        said = data[:200].decode("utf-8", "replace").strip()
        problem = f"POST {where}: HTTP {reply.status} {said}".rstrip()
        if reply.status in (408, 429) or reply.status >= 500:
            raise Retry(problem)
        raise Rejected(problem)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def joined(base: str, path: str) -> str:
    """``base`` with ``path`` appended, unless it ends with that path already."""
    return base if base.rstrip("/").endswith(path) else base.rstrip("/") + path
