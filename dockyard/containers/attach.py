"""A client of conmon's attach socket: container output in, stdin out. Never HTTP.

conmon's socket is SOCK_SEQPACKET: each message it sends is one stream byte (2 stdout,
3 stderr) followed by up to 8192 bytes of data. Bytes we send go to the container's
stdin; shutting down our write side closes the container's stdin when it was created
with StdinOnce.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from dockyard.runtime.monitor import ATTACH_STDERR, ATTACH_STDOUT

STDOUT, STDERR = 1, 2  # Docker's stream numbers
_BUF = 8192 + 1


class AttachConnection:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, bundle: Path) -> AttachConnection:
        # Reach the socket through /proc/self/fd so long bundle paths fit in sun_path.
        dfd = os.open(bundle, os.O_PATH)
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{dfd}/attach")
        finally:
            os.close(dfd)
        return cls(sock)

    async def recv(self) -> tuple[int, bytes] | None:
        """The next chunk of output as (Docker stream number, data); None at the end."""
        while True:
            try:
                msg = await self._loop.sock_recv(self._sock, _BUF)
            except OSError:
                return None
            if not msg:
                return None
            if len(msg) < 2:
                continue
            stream = STDERR if msg[0] == ATTACH_STDERR else STDOUT
            if msg[0] not in (ATTACH_STDOUT, ATTACH_STDERR):
                continue
            return stream, msg[1:]

    async def send(self, data: bytes) -> None:
        # One message per 8 KiB: conmon reads the socket in buffers of that size.
        for i in range(0, len(data), 8192):
            await self._loop.sock_sendall(self._sock, data[i : i + 8192])

    def close_stdin(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._sock.close()
