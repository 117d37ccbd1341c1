"""Exec routes: create, start (hijacked or detached), resize, inspect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from dockyard import errdefs
from dockyard.api import bodies, keys
from dockyard.api.app import Routes
from dockyard.api.routes.containers import parse_detach_keys, pump_input
from dockyard.api.schemas import json_body, qint
from dockyard.api.streams import STDOUT, frame, hijack

log = logging.getLogger(__name__)

routes = Routes()


def _svc(request: web.Request) -> Any:
    return request.app[keys.EXECS]




@routes.post("/containers/{id}/exec", body=bodies.EXEC_CREATE)
async def create(request: web.Request) -> web.Response:
    body = await json_body(request)  # field names matched as Go does (docker-py sends `detachKeys`)
    if body.get("DetachKeys"):
        try:
            parse_detach_keys(str(body["DetachKeys"]))
        except errdefs.InvalidArgument:  # moby's words for an exec's keys (it answers 500)
            raise errdefs.InvalidArgument(f"Invalid escape keys ({body['DetachKeys']}) provided") from None
    eid = await _svc(request).create(request.match_info["id"], body)
    return web.json_response({"Id": eid}, status=201)


@routes.get("/exec/{id}/json")
async def inspect(request: web.Request) -> web.Response:
    return web.json_response(_svc(request).inspect(request.match_info["id"]))


@routes.post("/exec/{id}/resize", query="h:integer w:integer")
async def resize(request: web.Request) -> web.Response:
    _svc(request).resize(request.match_info["id"], qint(request, "h", 0) or 0, qint(request, "w", 0) or 0)
    return web.Response(status=200)


@routes.post("/exec/{id}/start", body=bodies.EXEC_START, stream=True)
async def start(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    eid = request.match_info["id"]
    body = await json_body(request, required=False)
    rec = svc.get(eid)
    detach = bool(body.get("Detach"))
    if detach:
        await svc.start(eid, detach=True)
        return web.Response(status=200, content_type="application/json", text="")
    tty = bool(body.get("Tty", rec["ProcessConfig"]["tty"]))
    svc.check_start(eid)  # a 404 or 409 while the response can still say so
    # Hijack first, as Docker does: an exec's output then never arrives together with the
    # 101 headers, which docker-py would lose (it reads the socket past http.client's buffer).
    resp, stream = await hijack(request, multiplexed=not tty)
    try:
        session = await svc.start(eid, detach=False, console_size=body.get("ConsoleSize") or None)
    except Exception as err:  # a request root whose status is sent: Docker reports in the stream
        log.warning("exec %s: %s", eid[:12], err)
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            text = f"{err}\r\n".encode()
            await stream.write(text if tty else frame(STDOUT, text))
        stream.close()
        return resp
    in_task = None
    detached = False

    def on_detach() -> None:
        nonlocal detached
        detached = True
        session.detach()  # the process runs on, as after Docker's detach keys
        svc.publish_detach(eid)
        stream.close()

    try:
        if rec["OpenStdin"]:
            keys_ = parse_detach_keys(rec.get("DetachKeys") or "ctrl-p,ctrl-q")
            in_task = asyncio.ensure_future(
                pump_input(stream, session.write_stdin, session.close_stdin, keys_, on_detach)
            )
        while (item := await session.output.get()) is not None:
            sid, data = item
            await stream.write(data if tty else frame(sid, data))
        if not detached:
            await session.done
    except (ConnectionResetError, BrokenPipeError):
        if not detached:
            session.abandon()  # the client left before the end
    except asyncio.CancelledError:
        session.detach()  # the daemon is stopping; the process outlives it under conmon
        raise
    finally:
        if in_task and not in_task.done():
            in_task.cancel()
        stream.close()
    return resp
