"""Sans-IO decoders for the daemon's stream formats: 8-byte-header multiplexed frames and JSON lines.

Bytes go in, events come out; nothing here touches a socket or a file.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

STDIN, STDOUT, STDERR, SYSERR = 0, 1, 2, 3
_HEADER = struct.Struct(">BxxxL")


@dataclass
class FrameDecoder:
    """Splits a multiplexed attach/exec/logs stream into `(stream, payload)` pairs.

    Stream 0 (stdin echo) is reported as stdout, as the docker CLI does. With `tty=True` the
    bytes are raw and everything is stdout.
    """

    tty: bool = False
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self.tty:
            return [(STDOUT, bytes(data))] if data else []
        self._buf += data
        out: list[tuple[int, bytes]] = []
        while len(self._buf) >= _HEADER.size:
            stream, size = _HEADER.unpack_from(self._buf)
            if len(self._buf) < _HEADER.size + size:
                break
            payload = bytes(self._buf[_HEADER.size : _HEADER.size + size])
            del self._buf[: _HEADER.size + size]
            out.append((STDOUT if stream == STDIN else stream, payload))
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


@dataclass
class JSONLineDecoder:
    """Splits newline-delimited JSON (progress streams, events) into dicts."""

    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out: list[dict[str, Any]] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            line = bytes(self._buf[:nl]).strip()
            del self._buf[: nl + 1]
            if line:
                out.append(json.loads(line))
        return out

    def close(self) -> list[dict[str, Any]]:
        rest = bytes(self._buf).strip()
        self._buf.clear()
        if not rest:
            return []
        # Some daemons concatenate objects without newlines; decode them one after another.
        dec = json.JSONDecoder()
        text = rest.decode()
        out, i = [], 0
        while i < len(text):
            obj, i = dec.raw_decode(text, i)
            out.append(obj)
            while i < len(text) and text[i].isspace():
                i += 1
        return out


def encode_frame(stream: int, payload: bytes) -> bytes:
    return _HEADER.pack(stream, len(payload)) + payload
