"""Fluentd's forward protocol (v1), Forward mode: ``[tag, [[time, record], ...], {"chunk":
id}]`` in msgpack over TCP, ``time`` as the protocol's EventTime (ext type 0: seconds and
nanoseconds, big-endian), the tag ``TAG.AGENT``; the server's ``{"ack": id}`` is awaited
before a batch counts as taken (``require_ack_response``), so a lost connection sends it
again. Needs ``msgpack`` (the ``forward`` extra)."""

from __future__ import annotations

import base64
import os
import socket
import struct
from typing import Any

from corral.logs.forward.base import Record, Retry, Sink, unix_nanos
from corral.manifest.spec import FluentSink as Options

_TIME = struct.Struct(">II")


class Fluent(Sink):
    kind = "fluent"

    def __init__(self, name: str, project: str, options: Options) -> None:
        import msgpack  # type: ignore[import-untyped]  # only a fleet forwarding to Fluent

        super().__init__(name, project)
        host, _, port = options.address.rpartition(":")
        self.address, self.tag = (host.strip("[]"), int(port)), options.tag
        self._msgpack = msgpack
        self._sock: socket.socket | None = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.create_connection(self.address, timeout=10)
        return self._sock

    def _entries(self, records: list[Record]) -> dict[str, list[Any]]:
        ext = self._msgpack.ExtType
        by_tag: dict[str, list[Any]] = {}
        for r in records:
            ns = unix_nanos(r)
            when = ext(0, _TIME.pack(ns // 1_000_000_000, ns % 1_000_000_000))
            doc = {"project": self.project, **{k: v for k, v in r.items() if k != "timestamp"}}
            by_tag.setdefault(f"{self.tag}.{r.get('agent', '')}", []).append([when, doc])
        return by_tag

    def send(self, records: list[Record]) -> None:
        try:
            sock = self._socket()
            for tag, entries in self._entries(records).items():
                chunk = base64.b64encode(os.urandom(16)).decode()
                sock.sendall(self._msgpack.packb([tag, entries, {"chunk": chunk}]))
                self._await_ack(sock, chunk)
        except (OSError, ValueError) as exc:
            self.close()
            raise Retry(f"fluent {self.address[0]}:{self.address[1]}: {exc}") from None

    def _await_ack(self, sock: socket.socket, chunk: str) -> None:
        unpacker = self._msgpack.Unpacker(raw=False)
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection before its ack")
            unpacker.feed(data)
            for answer in unpacker:
                if isinstance(answer, dict) and answer.get("ack") == chunk:
                    return

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def make(name: str, project: str, options: Any) -> Sink:
    return Fluent(name, project, options)
