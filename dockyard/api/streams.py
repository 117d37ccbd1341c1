"""Docker's stream framing and the connection hijack of attach/exec.

`frame()` builds the 8-byte-header multiplexed frames used without a TTY. `hijack()`
answers `101 UPGRADED` (or `200` with a raw-stream content type), then takes the socket
away from aiohttp by swapping the transport's protocol: aiohttp closes a connection when
the peer half-closes, but Docker clients send stdin EOF as a half-close and still expect
output to flow, so the raw stream needs a protocol of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import weakref
from collections.abc import AsyncIterator, Iterator

from aiohttp import web

from dockyard.api import versions

STDIN, STDOUT, STDERR, SYSERR = 0, 1, 2, 3

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"


# Handler tasks of requests that stream until the client or the container goes away
# (attach, exec, logs -f, wait, events). On shutdown they are cancelled at once instead of
# holding the daemon in aiohttp's graceful wait; see `cancel_long_lived`.
_LONG_LIVED: weakref.WeakSet[asyncio.Task[object]] = weakref.WeakSet()


@contextlib.contextmanager
def long_lived() -> Iterator[None]:
    """Marks the current request handler as a stream that shutdown may cut."""
    task = asyncio.current_task()
    if task is not None:
        _LONG_LIVED.add(task)
    try:
        yield
    finally:
        if task is not None:
            _LONG_LIVED.discard(task)


def mark_long_lived() -> None:
    """Like `long_lived`, for the rest of the current handler."""
    task = asyncio.current_task()
    if task is not None:
        _LONG_LIVED.add(task)


DISCONNECT_POLL = 1.0  # seconds between checks that a waiting stream's client is still there


@contextlib.asynccontextmanager
async def cancel_on_disconnect(request: web.Request) -> AsyncIterator[None]:
    """Cancel the current handler once its client has gone away. A stream that waits for
    something (the next event, a container's exit, a log line) writes nothing meanwhile, so
    it cannot learn that the client left; without this, every abandoned `/events` or `wait`
    keeps its socket and subscription until that something happens, maybe never. aiohttp
    drops the protocol's transport when the connection is lost; that is what is watched."""
    handler = asyncio.current_task()
    assert handler is not None

    async def watch() -> None:
        while request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(DISCONNECT_POLL)
        handler.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        yield
    finally:
        watcher.cancel()


async def cancel_long_lived() -> None:
    """Daemon shutdown: end every streaming request now (an aiohttp on_shutdown hook)."""
    tasks = [t for t in _LONG_LIVED if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=1)


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


class _RawProtocol(asyncio.Protocol):
    def __init__(self, stream: HijackedStream) -> None:
        self._s = stream

    def data_received(self, data: bytes) -> None:
        self._s._feed(data)

    def eof_received(self) -> bool:
        self._s._feed_eof()
        return True  # keep the write side open: output keeps flowing after stdin EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self._s._lost()

    def pause_writing(self) -> None:
        self._s._can_write.clear()

    def resume_writing(self) -> None:
        self._s._can_write.set()


class HijackedStream:
    """A raw, bidirectional byte stream over a hijacked HTTP connection."""

    def __init__(self, transport: asyncio.Transport, tail: bytes) -> None:
        self._transport = transport
        self._reader = asyncio.StreamReader()
        if tail:
            self._reader.feed_data(tail)
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.closed = asyncio.Event()
        transport.set_protocol(_RawProtocol(self))
        try:
            transport.resume_reading()
        except (RuntimeError, AttributeError):
            pass

    def _feed(self, data: bytes) -> None:
        self._reader.feed_data(data)

    def _feed_eof(self) -> None:
        self._reader.feed_eof()

    def _lost(self) -> None:
        if not self._reader.at_eof():
            self._reader.feed_eof()
        self._can_write.set()
        self.closed.set()

    async def read(self, n: int = 65536) -> bytes:
        """Bytes from the client; b"" once it half-closed or went away."""
        return await self._reader.read(n)

    async def write(self, data: bytes) -> None:
        if self.closed.is_set() or self._transport.is_closing():
            raise ConnectionResetError("client went away")
        self._transport.write(data)
        await self._can_write.wait()

    def close(self) -> None:
        if not self._transport.is_closing():
            self._transport.close()


class _HijackResponse(web.StreamResponse):
    # No Content-Length and no chunked encoding: after the headers the socket is raw.
    _length_check = False


async def hijack(request: web.Request, *, multiplexed: bool) -> tuple[web.StreamResponse, HijackedStream]:
    mark_long_lived()  # a hijacked connection lives as long as its handler
    upgrade = "upgrade" in request.headers.get("Connection", "").lower()
    resp = _HijackResponse(status=101 if upgrade else 200)
    if upgrade:
        resp.headers["Connection"] = "Upgrade"
        resp.headers["Upgrade"] = "tcp"
    resp.headers["Content-Type"] = MULTIPLEXED_STREAM if multiplexed else RAW_STREAM
    resp.headers.update(versions.COMMON_HEADERS)
    resp.force_close()
    await resp.prepare(request)
    transport = request.transport
    assert transport is not None
    proto = request.protocol
    tail = getattr(proto, "_message_tail", b"") or b""
    if tail:
        proto._message_tail = b""
    return resp, HijackedStream(transport, tail)
