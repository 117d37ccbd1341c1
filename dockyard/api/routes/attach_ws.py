"""`GET /containers/{id}/attach/ws`: attach over a WebSocket, as browsers and some SDKs do.

The stream is the container's raw output, never multiplexed (a WebSocket message has no
stream id). Version-gated as dockerd: before API 1.42 every stream is attached whatever the
query says and messages are text frames; from 1.42 the `stdin`/`stdout`/`stderr` query
parameters choose the streams and messages are binary frames. `logs=1` replays the log
first; `detachKeys` ends the session and leaves the container running.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, cast

from aiohttp import WSMsgType, web

from dockyard.api import compat, keys
from dockyard.api.app import Routes
from dockyard.api.routes.containers import parse_detach_keys, pump_input
from dockyard.api.schemas import qbool
from dockyard.containers.logs import STDERR, STDOUT, read_log

routes = Routes()


class _WsInput:
    """The client's messages as the byte reads `pump_input` expects (b"" at the end)."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    async def read(self) -> bytes:
        msg = await self.ws.receive()
        if msg.type == WSMsgType.BINARY:
            return bytes(msg.data)
        if msg.type == WSMsgType.TEXT:
            return str(msg.data).encode()
        return b""


@routes.get("/containers/{id}/attach/ws")
async def attach_ws(request: web.Request) -> web.StreamResponse:
    svc: Any = request.app[keys.CONTAINERS]
    rec = svc.get(request.match_info["id"])  # a 404 before the upgrade
    detach_keys = parse_detach_keys(request.query.get("detachKeys") or "ctrl-p,ctrl-q")
    modern = compat.request_version(request) >= (1, 42)
    want = {s for s, q in ((STDOUT, "stdout"), (STDERR, "stderr")) if not modern or qbool(request, q)}
    use_stdin = (not modern or qbool(request, "stdin")) and bool(rec["Config"].get("OpenStdin"))
    ws = web.WebSocketResponse()
    await ws.prepare(request)

    async def send(data: bytes) -> None:
        if modern:
            await ws.send_bytes(data)
        else:
            await ws.send_str(data.decode(errors="replace"))

    try:
        if qbool(request, "logs"):
            async for batch in read_log(Path(rec["LogPath"])):
                for e in batch:
                    if e.stream in want:
                        await send(e.data)
        svc.publish(rec, "attach")  # dockerd's event, after the replayed logs, stream or not
        if qbool(request, "stream"):
            rec, conn = await svc.open_attach(rec["Id"])
            if conn is not None:
                await _pump(conn, ws, send, want, use_stdin, detach_keys)
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        with contextlib.suppress(ConnectionResetError):
            await ws.close()
    return ws


async def _pump(conn: Any, ws: web.WebSocketResponse, send: Any, want: set[int], use_stdin: bool,
                detach_keys: bytes) -> None:  # fmt: skip
    detached = asyncio.Event()

    async def output() -> None:
        while (item := await conn.recv()) is not None:
            if item[0] in want:
                await send(item[1])

    out_task = asyncio.ensure_future(output())
    in_task = None
    if use_stdin:  # cast: a reader with HijackedStream's read() contract
        in_task = asyncio.ensure_future(
            pump_input(cast(Any, _WsInput(ws)), conn.send, conn.close_stdin, detach_keys, detached.set)
        )
    waiters = [out_task, asyncio.ensure_future(detached.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (*waiters, in_task):
            if task and not task.done():
                task.cancel()
        conn.close()
