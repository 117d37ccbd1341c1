"""Container routes: create, list, inspect, lifecycle verbs, wait, logs, attach, prune."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from dockyard import errdefs
from dockyard.api import bodies, compat, keys
from dockyard.api.app import Routes
from dockyard.api.schemas import filters, json_body, qbool, qint
from dockyard.api.streams import (
    STDERR,
    STDOUT,
    HijackedStream,
    cancel_on_disconnect,
    frame,
    hijack,
    long_lived,
)
from dockyard.containers import listing
from dockyard.containers.logs import read_log
from dockyard.timefmt import parse_time_param

routes = Routes()


def _svc(request: web.Request) -> Any:
    return request.app[keys.CONTAINERS]


def _id(request: web.Request) -> str:
    return request.match_info["id"]


@routes.post("/containers/create", query="name platform", body=bodies.CONTAINER_CREATE)
async def create(request: web.Request) -> web.Response:
    body = compat.container_create(await json_body(request), compat.request_version(request))
    cid, warnings = await _svc(request).create(body, request.query.get("name"), request.query.get("platform"))
    return web.json_response({"Id": cid, "Warnings": warnings}, status=201)


@routes.get("/containers/json", query="all:boolean limit:integer size:boolean filters:json")
async def list_containers(request: web.Request) -> web.Response:
    svc = _svc(request)
    records = svc.all()
    f = filters(request)
    limit = qint(request, "limit", -1)
    # `limit` means the n most recently created, stopped ones included
    show_all = qbool(request, "all") or (limit is not None and limit > 0) or "status" in f or "exited" in f
    if not show_all:
        records = [r for r in records if r["State"]["Running"] or r["State"]["Status"] == "restarting"]
    records = listing.apply_filters(records, f, svc.get, svc.image_matches)
    if limit and limit > 0:
        records = records[:limit]
    out = [listing.entry(r) for r in records]
    if qbool(request, "size"):
        for e in out:
            e["SizeRw"], e["SizeRootFs"] = await svc.sizes(e["Id"])
    return web.json_response(out)


@routes.get("/containers/{id}/json", query="size:boolean")
async def inspect(request: web.Request) -> web.Response:
    svc = _svc(request)
    out = svc.inspect(_id(request))
    if qbool(request, "size"):
        out["SizeRw"], out["SizeRootFs"] = await svc.sizes(out["Id"])
    return web.json_response(out)


@routes.post("/containers/{id}/start", query="checkpoint checkpoint-dir detachKeys")
async def start(request: web.Request) -> web.Response:
    q = request.query
    await _svc(request).start_container(_id(request), q.get("checkpoint") or None, q.get("checkpoint-dir") or None)
    return web.Response(status=204)


@routes.post("/containers/{id}/stop", query="t:integer signal")
async def stop(request: web.Request) -> web.Response:
    await _svc(request).stop(_id(request), qint(request, "t"), request.query.get("signal"))
    return web.Response(status=204)


@routes.post("/containers/{id}/restart", query="t:integer signal")
async def restart(request: web.Request) -> web.Response:
    await _svc(request).restart(_id(request), qint(request, "t"), request.query.get("signal"))
    return web.Response(status=204)


@routes.post("/containers/{id}/kill", query="signal")
async def kill(request: web.Request) -> web.Response:
    await _svc(request).kill(_id(request), request.query.get("signal"))
    return web.Response(status=204)


@routes.post("/containers/{id}/pause")
async def pause(request: web.Request) -> web.Response:
    await _svc(request).pause(_id(request))
    return web.Response(status=204)


@routes.post("/containers/{id}/unpause")
async def unpause(request: web.Request) -> web.Response:
    await _svc(request).unpause(_id(request))
    return web.Response(status=204)


@routes.post("/containers/{id}/rename", query="name")
async def rename(request: web.Request) -> web.Response:
    await _svc(request).rename(_id(request), request.query.get("name", ""))
    return web.Response(status=204)


@routes.post("/containers/{id}/update", body=bodies.CONTAINER_UPDATE)
async def update(request: web.Request) -> web.Response:
    warnings = await _svc(request).update(_id(request), await json_body(request))
    return web.json_response({"Warnings": warnings})


@routes.post("/containers/{id}/resize", query="h:integer w:integer")
async def resize(request: web.Request) -> web.Response:
    h, w = qint(request, "h", 0), qint(request, "w", 0)
    _svc(request).resize(_id(request), h or 0, w or 0)
    return web.Response(status=200)


@routes.delete("/containers/{id}", query="force:boolean v:boolean")
async def remove(request: web.Request) -> web.Response:
    if qbool(request, "link"):  # a link's name is /parent/alias (api/routes/links.py); this is a plain name
        raise errdefs.Conflict("Conflict, cannot remove the default link name of the container")
    await _svc(request).remove(_id(request), force=qbool(request, "force"), volumes=qbool(request, "v"))
    return web.Response(status=204)


@routes.post("/containers/{id}/wait", query="condition", stream=True)
async def wait(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    condition = request.query.get("condition", "not-running")
    # Resolve first so a bad id is a plain 404, then send headers at once: clients start
    # the container only after the wait is established.
    wait_task = asyncio.ensure_future(svc.wait(_id(request), condition))
    await asyncio.sleep(0)
    if wait_task.done() and wait_task.exception() is not None:
        raise wait_task.exception()
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    try:
        with long_lived():
            await resp.prepare(request)
            try:
                async with cancel_on_disconnect(request):
                    rec = await wait_task
                body: dict[str, Any] = {"StatusCode": rec["State"]["ExitCode"]}
                if rec["State"].get("Error"):
                    body["Error"] = {"Message": rec["State"]["Error"]}
            except errdefs.DockyardError as err:
                body = {"StatusCode": -1, "Error": {"Message": str(err)}}
            finally:
                if not wait_task.done():
                    wait_task.cancel()
            await resp.write(json.dumps(body).encode() + b"\n")
            await resp.write_eof()
    except ConnectionResetError:
        pass  # the client stopped waiting (e.g. `run -d` or a detach)
    return resp


@routes.post(
    "/commit", query="container repo tag comment author changes:list pause:boolean", body=bodies.CONTAINER_CONFIG
)
async def commit(request: web.Request) -> web.Response:
    q = request.query
    if not q.get("container"):
        raise errdefs.InvalidArgument("container is required")
    body = await json_body(request, required=False)
    image_id = await _svc(request).commit(
        q["container"],
        repo=q.get("repo") or None,
        tag=q.get("tag") or None,
        comment=q.get("comment", ""),
        author=q.get("author", ""),
        changes=q.getall("changes", []),
        pause=qbool(request, "pause", True),
        config=body,
    )
    return web.json_response({"Id": image_id}, status=201)


@routes.post("/containers/prune", query="filters:json")
async def prune(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).prune(filters(request)))


def _time_param(request: web.Request, name: str) -> float | None:
    v = request.query.get(name)
    if not v or v == "0":
        return None
    try:
        return parse_time_param(v)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid value for {name}: {v!r}") from None


@routes.get(
    "/containers/{id}/logs",
    query="follow:boolean stdout:boolean stderr:boolean since until timestamps:boolean tail",
    stream=True,
)
async def logs(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    rec = svc.get(_id(request))
    svc.check_logs_readable(rec)
    want_out, want_err = qbool(request, "stdout"), qbool(request, "stderr")
    if not (want_out or want_err):
        raise errdefs.InvalidArgument("Bad parameters: you must choose at least one stream")
    tty = bool(rec["Config"].get("Tty"))
    tail_s = request.query.get("tail", "all")
    tail = None if tail_s in ("all", "") else int(tail_s) if tail_s.lstrip("-").isdigit() else None
    timestamps = qbool(request, "timestamps")
    since, until = _time_param(request, "since"), _time_param(request, "until")  # 400 before any header
    resp = web.StreamResponse(
        headers={
            "Content-Type": "application/vnd.docker.raw-stream"
            if tty
            else "application/vnd.docker.multiplexed-stream"
        }
    )
    await resp.prepare(request)
    with contextlib.suppress(ConnectionResetError), long_lived():
        async with cancel_on_disconnect(request):  # `logs -f` of a quiet container writes nothing
            await _write_logs(request, resp, rec, svc, want_out, want_err, tty, tail, timestamps, since, until)
    return resp


async def _write_logs(
    request: web.Request, resp: web.StreamResponse, rec: dict[str, Any], svc: Any,
    want_out: bool, want_err: bool, tty: bool, tail: int | None, timestamps: bool,
    since: float | None, until: float | None,
) -> None:  # fmt: skip
    async for batch in read_log(
        Path(rec["LogPath"]),
        tail=tail,
        since=since,
        until=until,
        follow=qbool(request, "follow"),
        is_running=svc.is_running(rec["Id"]),
    ):
        out = bytearray()
        for e in batch:
            if (e.stream == STDOUT and not want_out) or (e.stream == STDERR and not want_err):
                continue
            data = e.timestamp.replace(b"+00:00", b"Z") + b" " + e.data if timestamps else e.data
            # one frame per log entry, as dockerd sends them: clients iterate over frames
            out += data if tty else frame(e.stream, data)
        if out:
            await resp.write(bytes(out))
    await resp.write_eof()


async def _pump_output(conn: Any, stream: HijackedStream, tty: bool, want: set[int]) -> None:
    while (item := await conn.recv()) is not None:
        sid, data = item
        if sid not in want:
            continue
        await stream.write(data if tty else frame(sid, data))


def parse_detach_keys(spec: str) -> bytes:
    """ "ctrl-p,ctrl-q" -> b"\\x10\\x11"."""
    out = bytearray()
    for part in spec.split(","):
        part = part.strip()
        if part.startswith("ctrl-") and len(part) == 6:
            c = part[5]
            out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}.get(c, ord(c.lower()) & 0x1F))
        elif len(part) == 1:
            out.append(ord(part))
        elif part:
            raise errdefs.InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


async def pump_input(
    stream: HijackedStream, write: Any, close: Any, detach_keys: bytes, on_detach: Any
) -> None:
    """Client bytes to the process's stdin, watching for the detach sequence."""
    matched = 0
    while data := await stream.read():
        if detach_keys:
            out = bytearray()
            for b in data:
                if b == detach_keys[matched]:
                    matched += 1
                    if matched == len(detach_keys):
                        on_detach()
                        return
                    continue
                if matched:
                    out += detach_keys[:matched]
                    matched = 0
                out.append(b)
            data = bytes(out)
        if data:
            await write(data)
    close()


@routes.post(
    "/containers/{id}/attach",
    query="detachKeys logs:boolean stream:boolean stdin:boolean stdout:boolean stderr:boolean",
    body="stream",
    stream=True,
)
async def attach(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    rec = svc.get(_id(request))
    tty = bool(rec["Config"].get("Tty"))
    want = {s for s, q in ((STDOUT, "stdout"), (STDERR, "stderr")) if qbool(request, q)}
    use_stdin = qbool(request, "stdin") and bool(rec["Config"].get("OpenStdin"))
    detach_keys = parse_detach_keys(request.query.get("detachKeys") or "ctrl-p,ctrl-q")
    resp, stream = await hijack(request, multiplexed=not tty)
    try:
        if qbool(request, "logs"):
            # docker-py reads the hijacked socket past http.client's buffered reader: bytes
            # that arrive together with the 101 headers are lost to it. Replayed logs are
            # ready at once, so give the client a moment to take the headers alone.
            await asyncio.sleep(0.05)
            async for batch in read_log(Path(rec["LogPath"])):
                for e in batch:
                    if e.stream in want:
                        await stream.write(e.data if tty else frame(e.stream, e.data))
        svc.publish(rec, "attach")  # dockerd's event, after the replayed logs, stream or not
        if not qbool(request, "stream", True):
            return resp
        # attaching to a created container waits for its start; a client that leaves
        # meanwhile must not hold the connection until then
        opening = asyncio.ensure_future(svc.open_attach(rec["Id"]))
        gone = asyncio.ensure_future(stream.closed.wait())
        await asyncio.wait([opening, gone], return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not opening.done():
            opening.cancel()
            return resp
        rec, conn = opening.result()
        if conn is None:
            return resp
        detached = asyncio.Event()
        out_task = asyncio.ensure_future(_pump_output(conn, stream, tty, want))
        in_task: asyncio.Future[Any] | None = None
        if use_stdin:
            in_task = asyncio.ensure_future(
                pump_input(stream, conn.send, conn.close_stdin, detach_keys, detached.set)
            )
        try:
            waiters = [
                out_task,
                asyncio.ensure_future(detached.wait()),
                asyncio.ensure_future(stream.closed.wait()),
            ]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for t in waiters[1:]:
                t.cancel()
            if detached.is_set():
                svc.publish(rec, "detach")
        finally:
            for task in (out_task, in_task):
                if task and not task.done():
                    task.cancel()
            conn.close()
        return resp
    except (ConnectionResetError, BrokenPipeError):
        return resp
    finally:
        stream.close()
