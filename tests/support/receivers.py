"""Test receivers for log forwarding, where no real server is packaged for these machines
(no OTLP collector, Loki, Elasticsearch or Fluentd in Debian here): small servers on
127.0.0.1 that decode the real wire formats with the official schemas and codecs and answer
as the real servers do.

- ``HttpReceiver``: OTLP/HTTP ``/v1/logs`` and ``/v1/traces``, protobuf decoded with the
  official generated classes (``opentelemetry-proto`` from PyPI); Loki's push API
  (``/loki/api/v1/push``): its native snappy-compressed protobuf, parsed with a class built
  from the official ``push.proto`` (``tests.support.lokipush``), and its JSON body, checked
  field by field; Elasticsearch's bulk
  API (``/_bulk``, NDJSON action/document pairs, answered with a bulk response).
- ``FluentReceiver``: Fluentd's forward protocol v1 over TCP, decoded with ``msgpack``
  (Message, Forward and PackedForward modes, EventTime ext type 0), acking each chunk.

Each can be stopped and started again on its port (a sink that goes down and comes back),
or told to answer 503 (a sink that is up but refuses for now).
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Row = dict[str, Any]


def _value(v: Any) -> Any:
    """An OTLP AnyValue as a Python value."""
    which = v.WhichOneof("value")
    if which in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(v, which)
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class _Server:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[str, list[Row]] = {
            "otlp": [],
            "traces": [],
            "loki": [],
            "elasticsearch": [],
            "fluent": [],
        }
        self.requests: dict[str, int] = {}
        self.mistakes: list[str] = []  # requests that did not decode (answered 400)
        self.port = 0
        self._conns: set[socket.socket] = set()

    def track(self, conn: socket.socket) -> None:
        with self.lock:
            self._conns.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self.lock:
            self._conns.discard(conn)

    def drop_connections(self) -> None:
        """Cut the open connections too, as a server that went down does."""
        with self.lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def add(self, kind: str, rows: list[Row]) -> None:
        with self.lock:
            self.rows[kind].extend(rows)
            self.requests[kind] = self.requests.get(kind, 0) + 1

    def got(self, kind: str) -> list[Row]:
        with self.lock:
            return list(self.rows[kind])

    def wait(
        self,
        kind: str,
        predicate: Callable[[list[Row]], bool],
        timeout: float = 30,
        what: str = "rows",
    ) -> list[Row]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.got(kind)
            if predicate(rows):
                return rows
            time.sleep(0.05)
        rows = self.got(kind)
        raise AssertionError(
            f"{kind}: timed out waiting for {what}; {len(rows)} rows, last: {rows[-3:]}"
        )


class HttpReceiver(_Server):
    def __init__(self) -> None:
        super().__init__()
        self.refuse: int | None = None  # answer every request with this status
        self.seen_headers: list[dict[str, str]] = []  # each request's headers
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.seen_headers.append(dict(self.headers.items()))
                if receiver.refuse is not None:
                    return self._answer(receiver.refuse, b"refused for now", "text/plain")
                try:
                    status, reply, ctype = receiver.handle(
                        self.path, self.headers.get("Content-Type"), body
                    )
                except Exception as exc:  # a wire-format mistake: the sender sees a 400
                    status, reply, ctype = 400, repr(exc).encode(), "text/plain"
                    receiver.mistakes.append(f"{self.path}: {exc!r}")
                self._answer(status, reply, ctype)

            def setup(self) -> None:
                super().setup()
                receiver.track(self.request)

            def finish(self) -> None:
                receiver.untrack(self.request)
                super().finish()

            def _answer(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self.drop_connections()

    def handle(self, path: str, ctype: str | None, body: bytes) -> tuple[int, bytes, str]:
        if path == "/v1/logs":
            return self._otlp_logs(ctype, body)
        if path == "/v1/traces":
            return self._otlp_traces(ctype, body)
        if path == "/loki/api/v1/push":
            return self._loki(ctype, body)
        if path.endswith("/_bulk"):
            return self._bulk(ctype, body)
        return 404, b"no such path", "text/plain"

    def _otlp_logs(self, ctype: str | None, body: bytes) -> tuple[int, bytes, str]:
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as svc

        assert ctype == "application/x-protobuf", ctype
        req = svc.ExportLogsServiceRequest.FromString(body)
        rows = []
        for rl in req.resource_logs:
            resource = _attrs(rl.resource.attributes)
            for sl in rl.scope_logs:
                assert sl.scope.name == "corral"
                for lr in sl.log_records:
                    rows.append(
                        {
                            "resource": resource,
                            "time": lr.time_unix_nano,
                            "observed": lr.observed_time_unix_nano,
                            "severity": lr.severity_number,
                            "severity_text": lr.severity_text,
                            "body": _value(lr.body),
                            "attributes": _attrs(lr.attributes),
                        }
                    )
        self.add("otlp", rows)
        return 200, svc.ExportLogsServiceResponse().SerializeToString(), "application/x-protobuf"

    def _otlp_traces(self, ctype: str | None, body: bytes) -> tuple[int, bytes, str]:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as svc

        assert ctype == "application/x-protobuf", ctype
        req = svc.ExportTraceServiceRequest.FromString(body)
        rows = []
        for rs in req.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    assert len(sp.trace_id) == 16 and len(sp.span_id) == 8
                    rows.append(
                        {
                            "resource": resource,
                            "name": sp.name,
                            "kind": sp.kind,
                            "trace_id": sp.trace_id.hex(),
                            "span_id": sp.span_id.hex(),
                            "start": sp.start_time_unix_nano,
                            "end": sp.end_time_unix_nano,
                            "status": sp.status.code,
                            "message": sp.status.message,
                            "attributes": _attrs(sp.attributes),
                        }
                    )
        self.add("traces", rows)
        return 200, svc.ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf"

    def _loki(self, ctype: str | None, body: bytes) -> tuple[int, bytes, str]:
        """Loki's push body, either form Loki takes; answered 204 as Loki does.

        - ``application/x-protobuf``: snappy block-compressed (not framed, decompressed with
          ``cramjam``) ``logproto.PushRequest``, parsed with ``tests.support.lokipush``'s class
          built from the official ``pkg/push/push.proto``; labels parsed from their text.
        - ``application/json``: {"streams": [{"stream": {label: value}, "values":
          [[ns, line] | [ns, line, {metadata}]]}]}."""
        if ctype == "application/x-protobuf":
            rows = self._loki_protobuf(body)
        else:
            assert ctype == "application/json", ctype
            rows = self._loki_json(body)
        self.add("loki", rows)
        return 204, b"", "text/plain"

    def _loki_protobuf(self, body: bytes) -> list[Row]:
        import cramjam

        from tests.support.lokipush import PushRequest, parse_labels

        push = PushRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
        rows = []
        for stream in push.streams:
            labels = parse_labels(stream.labels)
            for entry in stream.entries:
                assert entry.HasField("timestamp"), entry
                ts = entry.timestamp
                assert 0 <= ts.nanos < 1_000_000_000, ts
                meta = {p.name: p.value for p in entry.structuredMetadata}
                rows.append(
                    {
                        "format": "protobuf",
                        "labels": labels,
                        "time": ts.seconds * 1_000_000_000 + ts.nanos,
                        "line": entry.line,
                        "metadata": meta,
                    }
                )
        return rows

    def _loki_json(self, body: bytes) -> list[Row]:
        push = json.loads(body)
        rows = []
        for stream in push["streams"]:
            labels = stream["stream"]
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
            for value in stream["values"]:
                assert isinstance(value[0], str) and value[0].isdigit(), value
                assert isinstance(value[1], str), value
                meta = value[2] if len(value) == 3 else {}
                assert all(isinstance(v, str) for v in meta.values()), meta
                rows.append(
                    {
                        "format": "json",
                        "labels": labels,
                        "time": int(value[0]),
                        "line": value[1],
                        "metadata": meta,
                    }
                )
        return rows

    def _bulk(self, ctype: str | None, body: bytes) -> tuple[int, bytes, str]:
        """The bulk API's NDJSON: an action line, then the document, per record; the body
        ends with a newline. Answered with the bulk response's shape."""
        assert ctype == "application/x-ndjson", ctype
        assert body.endswith(b"\n")
        lines = body.decode().splitlines()
        assert len(lines) % 2 == 0
        rows, items = [], []
        for action_line, doc_line in zip(lines[::2], lines[1::2], strict=True):
            action = json.loads(action_line)
            ((op, meta),) = action.items()
            assert op == "create", action
            doc = json.loads(doc_line)
            rows.append({"index": meta["_index"], "doc": doc})
            items.append({"create": {"_index": meta["_index"], "status": 201, "result": "created"}})
        self.add("elasticsearch", rows)
        reply = {"took": 1, "errors": False, "items": items}
        return 200, json.dumps(reply).encode(), "application/json"


class FluentReceiver(_Server):
    """Fluentd's forward input: msgpack over TCP, an ack per chunk option."""

    def __init__(self) -> None:
        super().__init__()
        self._server: socketserver.ThreadingTCPServer | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FluentReceiver:
        import msgpack

        receiver = self

        def ext(code: int, data: bytes) -> Any:
            assert code == 0 and len(data) == 8, (code, data)  # EventTime
            sec, nsec = struct.unpack(">II", data)
            return sec * 1_000_000_000 + nsec

        class Handler(socketserver.BaseRequestHandler):
            def setup(self) -> None:
                receiver.track(self.request)

            def finish(self) -> None:
                receiver.untrack(self.request)

            def handle(self) -> None:
                unpacker = msgpack.Unpacker(raw=False, ext_hook=ext)
                while data := _recv(self.request):
                    unpacker.feed(data)
                    for message in unpacker:
                        self._one(message)

            def _one(self, message: list[Any]) -> None:
                tag, second = message[0], message[1]
                if isinstance(second, list):  # Forward mode
                    entries, option = second, message[2] if len(message) > 2 else {}
                elif isinstance(second, bytes):  # PackedForward
                    packed = msgpack.Unpacker(raw=False, ext_hook=ext)
                    packed.feed(second)
                    entries, option = list(packed), message[2] if len(message) > 2 else {}
                else:  # Message mode
                    entries, option = [[second, message[2]]], message[3] if len(message) > 3 else {}
                receiver.add("fluent", [{"tag": tag, "time": t, "record": r} for t, r in entries])
                if option and option.get("chunk"):
                    self.request.sendall(msgpack.packb({"ack": option["chunk"]}))

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.drop_connections()


def _recv(conn: socket.socket) -> bytes:
    try:
        return conn.recv(65536)
    except OSError:
        return b""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
