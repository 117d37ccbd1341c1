"""Hijacked connections for attach and exec start: raw HTTP/1.1 upgrade on a fresh socket.

docker-py hands back the socket under its HTTP response, which can lose bytes already buffered
behind the headers; we speak the tiny upgrade handshake ourselves and keep those bytes.
"""

from __future__ import annotations

import json
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

from dockyard.client._errors import cannot_connect, from_status


@dataclass
class HijackedConn:
    """A bidirectional raw stream: `initial` holds bytes that arrived with the response headers."""

    sock: socket.socket
    initial: bytes
    content_type: str

    def recv(self, n: int = 65536) -> bytes:
        if self.initial:
            data, self.initial = self.initial, b""
            return data
        return self.sock.recv(n)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _connect(host: str) -> socket.socket:
    if host.startswith("unix://"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(host[len("unix://") :])
        return s
    if host.startswith(("tcp://", "http://")):
        u = urllib.parse.urlsplit(host)
        return socket.create_connection((u.hostname or "localhost", u.port or 2375))
    raise ValueError(f"unsupported host for attach: {host}")


def hijack(host: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> HijackedConn:
    """POST `path` with `Upgrade: tcp` and return the raw connection once headers are read."""
    try:
        sock = _connect(host)
    except OSError as err:
        raise cannot_connect(host) from err
    query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None}, doseq=True)
    data = json.dumps(body).encode() if body is not None else b""
    head = (
        f"POST {path}{'?' + query if query else ''} HTTP/1.1\r\n"
        "Host: docker\r\nUser-Agent: dockyard-cli\r\n"
        "Connection: Upgrade\r\nUpgrade: tcp\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            sock.close()
            raise cannot_connect(host)
        buf += chunk
    raw_head, rest = buf.split(b"\r\n\r\n", 1)
    lines = raw_head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if status not in (101, 200):
        body_bytes = _read_body(sock, headers, rest)
        sock.close()
        raise from_status(status, _message(body_bytes))
    return HijackedConn(sock, rest, headers.get("content-type", ""))


def _read_body(sock: socket.socket, headers: dict[str, str], rest: bytes) -> bytes:
    if "content-length" in headers:
        need = int(headers["content-length"])
        while len(rest) < need:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return rest[:need]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        # Good enough for short error bodies: read until the terminating chunk.
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        out, data = b"", rest
        while data:
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out += data[:size]
            data = data[size + 2 :]
        return out
    sock.settimeout(5)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    except OSError:
        pass
    return rest


def _message(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        return str(json.loads(text).get("message", text))
    except (ValueError, AttributeError):
        return text
