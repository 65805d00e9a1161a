"""A minimal client for kvserver (importable by agents that sit in the same folder)."""

import socket


def command(port: int, *args: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(" ".join(args).encode() + b"\r\n")
        return s.recv(4096).strip()
