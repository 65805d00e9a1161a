"""Syslog, RFC 5424: ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] BOM MSG``, with APP the
agent, PROCID the instance, MSGID the stream, the severity from the level, and a
``corral@32473`` structured-data element holding project, agent, instance, level, run and
the line's own fields. Over TCP each message is framed by octet counting (RFC 6587 3.4.1),
so a stack's newlines stay in its one message; over UDP a datagram holds one message (cut
at 8 KB). TCP has no acknowledgement: a batch counts as sent once written."""

from __future__ import annotations

import json
import socket
from typing import Any

from corral.logs.forward.base import Record, Retry, Sink, fields
from corral.manifest.spec import SyslogSink as Options

SEVERITY = {"debug": 7, "info": 6, "warn": 4, "error": 3, "fatal": 2}
ENTERPRISE = "corral@32473"  # 32473: the private enterprise number RFC 5612 sets for examples
UDP_MAX = 8192
_BOM = b"\xef\xbb\xbf"


def _ascii(text: str, size: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``size`` long."""
    out = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text)[:size]
    return out or "-"


def _param_name(key: str) -> str:
    return "".join(c for c in key if 33 <= ord(c) <= 126 and c not in '= ]"')[:32] or "_"


def _param_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def message(r: Record, project: str, host: str, facility: int) -> bytes:
    level = str(r.get("level", "info"))
    pri = facility * 8 + SEVERITY.get(level, 6)
    ts = r.get("timestamp") if isinstance(r.get("timestamp"), str) else "-"
    params = {
        "project": project,
        "agent": r.get("agent", ""),
        "instance": r.get("instance", ""),
        "level": level,
    }
    if r.get("run") is not None:
        params["run"] = r["run"]
    params.update({_param_name(k): v for k, v in fields(r).items()})
    sd = "[" + ENTERPRISE + "".join(f' {k}="{_param_value(v)}"' for k, v in params.items()) + "]"
    head = (
        f"<{pri}>1 {ts} {host} {_ascii(str(r.get('agent', '')), 48)} "
        f"{_ascii(str(r.get('instance', '')), 128)} {_ascii(str(r.get('stream', '')), 32)}"
        f" {sd} "
    )
    return (
        head.encode("utf-8", "replace")
        + _BOM
        + str(r.get("message", "")).encode("utf-8", "replace")
    )


class Syslog(Sink):
    kind = "syslog"

    def __init__(self, name: str, project: str, options: Options) -> None:
        super().__init__(name, project)
        host, _, port = options.address.rpartition(":")
        self.address = (host.strip("[]"), int(port))
        self.udp, self.facility = options.protocol == "udp", options.facility
        self.host = _ascii(socket.gethostname(), 255)
        self._sock: socket.socket | None = None

    def _socket(self) -> socket.socket:
        if self._sock is not None and not self.udp and not _open(self._sock):
            self.close()  # the server closed it (restarted): what we wrote now would be lost
        if self._sock is None:
            kind = socket.SOCK_DGRAM if self.udp else socket.SOCK_STREAM
            infos = socket.getaddrinfo(*self.address, type=kind)
            family, _, _, _, where = infos[0]
            sock = socket.socket(family, kind)
            sock.settimeout(10)
            sock.connect(where)
            self._sock = sock
        return self._sock

    def send(self, records: list[Record]) -> None:
        try:
            sock = self._socket()
            if self.udp:
                for r in records:
                    sock.send(message(r, self.project, self.host, self.facility)[:UDP_MAX])
            else:
                frames = []
                for r in records:
                    m = message(r, self.project, self.host, self.facility)
                    frames.append(b"%d " % len(m) + m)
                sock.sendall(b"".join(frames))
        except OSError as exc:
            self.close()
            raise Retry(f"syslog {self.address[0]}:{self.address[1]}: {exc}") from None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _open(sock: socket.socket) -> bool:
    """Whether the peer has not closed the connection (a syslog server never writes)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def make(name: str, project: str, options: Any) -> Sink:
    return Syslog(name, project, options)
