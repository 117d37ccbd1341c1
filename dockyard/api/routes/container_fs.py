"""Container file-system and process views: archive (cp), export, changes (diff), top, stats.

HTTP adapter only: query parsing, Docker's status codes and headers, and streaming. The
blocking tar and tree work runs in `dockyard.containers.archive` on a worker thread; bytes
cross between that thread and the loop one chunk at a time (`_LoopWriter`, `_LoopReader`),
so neither an export nor an upload is ever held in memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, BinaryIO, cast

from aiohttp import web

from dockyard import errdefs
from dockyard.api import keys
from dockyard.api.app import Routes
from dockyard.api.schemas import qbool
from dockyard.containers import archive, stats, top
from dockyard.containers.files import resolve_user

log = logging.getLogger(__name__)

routes = Routes()

_CHUNK = 1 << 16


def _svc(request: web.Request) -> Any:
    return request.app[keys.CONTAINERS]


def _ref(request: web.Request) -> str:
    return request.match_info["id"]


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise errdefs.InvalidArgument("bad parameter: 'path' cannot be empty")
    return path


class _LoopWriter:
    """File-like sink for a worker thread: buffers, then writes each chunk on the loop and
    waits for it, so a slow client slows the tar down instead of filling memory."""

    def __init__(self, resp: web.StreamResponse, loop: asyncio.AbstractEventLoop) -> None:
        self._resp = resp
        self._loop = loop
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= _CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            chunk, self._buf = bytes(self._buf), bytearray()
            asyncio.run_coroutine_threadsafe(self._resp.write(chunk), self._loop).result()


class _LoopReader:
    """File-like source for a worker thread over the request body."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self._content = request.content
        self._loop = loop
        self._buf = b""
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._buf) < n):
            chunk = asyncio.run_coroutine_threadsafe(self._content.read(_CHUNK), self._loop).result()
            if not chunk:
                self._eof = True
                break
            self._buf += chunk
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


async def _stream_tar(request: web.Request, headers: dict[str, str], produce: Any) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/x-tar", **headers})
    await resp.prepare(request)
    out = _LoopWriter(resp, asyncio.get_running_loop())

    def run() -> None:
        produce(out)
        out.flush()

    try:
        await asyncio.to_thread(run)
    except ConnectionError:  # the client went away: nobody is left to tell
        log.debug("%s %s: client disconnected", request.method, request.path)
        return resp
    except Exception:  # the status is sent already: cut the stream so the client sees it fail
        log.exception("%s %s: tar stream failed", request.method, request.path)
        if request.transport is not None:
            request.transport.close()
        return resp
    await resp.write_eof()
    return resp


# ---- archive ---------------------------------------------------------------------------------


@routes.head("/containers/{id}/archive", query="path")
async def archive_head(request: web.Request) -> web.Response:
    svc, ref, path = _svc(request), _ref(request), _path(request)
    async with svc.rootfs_mounted(ref, announce_volumes=True) as (rec, rootfs):
        cfs = archive.view(rec, rootfs, svc.bundle(rec["Id"]), ref, svc.id_mapping)
        st = await asyncio.to_thread(cfs.stat, path)
    headers = {archive.STAT_HEADER: st.header_value(), "Content-Type": "application/x-tar"}
    return web.Response(status=200, headers=headers)


@routes.get("/containers/{id}/archive", query="path")
async def archive_get(request: web.Request) -> web.StreamResponse:
    svc, ref, path = _svc(request), _ref(request), _path(request)
    async with svc.rootfs_mounted(ref, announce_volumes=True) as (rec, rootfs):
        cfs = archive.view(rec, rootfs, svc.bundle(rec["Id"]), ref, svc.id_mapping)
        st = await asyncio.to_thread(cfs.stat, path)
        svc.publish(rec, "archive-path")
        return await _stream_tar(
            request, {archive.STAT_HEADER: st.header_value()}, lambda out: cfs.write_archive(path, out)
        )


@routes.put(
    "/containers/{id}/archive", query="path noOverwriteDirNonDir:boolean copyUIDGID:boolean", body="stream"
)
async def archive_put(request: web.Request) -> web.Response:
    svc, ref, path = _svc(request), _ref(request), _path(request)
    no_overwrite = qbool(request, "noOverwriteDirNonDir")
    copy_uid_gid = qbool(request, "copyUIDGID")
    async with svc.rootfs_mounted(ref, announce_volumes=True) as (rec, rootfs):
        cfs = archive.view(rec, rootfs, svc.bundle(rec["Id"]), ref, svc.id_mapping)
        owner = None
        if copy_uid_gid and rec["Config"].get("User"):
            user = await asyncio.to_thread(resolve_user, rootfs, rec["Config"]["User"])
            owner = (user.uid, user.gid)
        src = cast(BinaryIO, _LoopReader(request, asyncio.get_running_loop()))
        await asyncio.to_thread(
            cfs.extract, path, src, no_overwrite_dir_non_dir=no_overwrite, owner=owner
        )
        svc.publish(rec, "extract-to-dir")
    return web.Response(status=200)


@routes.get("/containers/{id}/export")
async def export(request: web.Request) -> web.StreamResponse:
    svc, ref = _svc(request), _ref(request)
    async with svc.rootfs_mounted(ref) as (rec, rootfs):
        cfs = archive.view(rec, rootfs, svc.bundle(rec["Id"]), ref, svc.id_mapping)
        resp = await _stream_tar(request, {}, cfs.export)
    svc.publish(rec, "export")
    return resp


@routes.get("/containers/{id}/changes")
async def changes(request: web.Request) -> web.Response:
    rec = _svc(request).get(_ref(request))
    images = request.app[keys.IMAGES]
    if asyncio.iscoroutinefunction(images.changes):
        result = await images.changes(rec["Id"])
    else:  # a tree walk: keep it off the loop
        result = await asyncio.to_thread(images.changes, rec["Id"])
    return web.json_response(result)


# ---- top -----------------------------------------------------------------------------------


@routes.get("/containers/{id}/top", query="ps_args")
async def top_route(request: web.Request) -> web.Response:
    svc = _svc(request)
    rec = svc.get(_ref(request))
    cid = rec["Id"]
    if rec["State"].get("Restarting"):
        raise errdefs.Conflict(f"Container {cid} is restarting, wait until the container is running")
    if not rec["State"]["Running"]:
        raise errdefs.Conflict(f"Container {cid} is not running")
    pids = await svc.runtime(rec).ps(cid)
    result = await top.top(pids, request.query.get("ps_args", ""))
    svc.publish(rec, "top")
    return web.json_response(result)


# ---- stats ---------------------------------------------------------------------------------

_INTERVAL = 1.0


def _running(svc: Any, cid: str) -> dict[str, Any] | None:
    try:
        rec: dict[str, Any] = svc.get(cid)
    except errdefs.NotFound:
        return None
    return rec if rec["State"]["Running"] else None


@routes.get("/containers/{id}/stats", query="stream:boolean one-shot:boolean", stream=True)
async def stats_route(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    rec = svc.get(_ref(request))
    cid, name = rec["Id"], rec["Name"]
    stream = qbool(request, "stream", True)
    one_shot = qbool(request, "one-shot")
    if stream and one_shot:
        raise errdefs.InvalidArgument("cannot have stream=true and one-shot=true")
    running = rec["State"]["Running"]
    if not running and not stream:
        return web.json_response(stats.empty_stats(name, cid))
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    if not running:  # a stream on a stopped container: one zeroed object, then the end
        await resp.write(json.dumps(stats.empty_stats(name, cid)).encode() + b"\n")
        await resp.write_eof()
        return resp
    sampler = await asyncio.to_thread(stats.Sampler.for_container, cid, int(rec["State"]["Pid"] or 0))
    prev: dict[str, Any] | None = None
    while (cur := _running(svc, cid)) is not None:
        sample = await asyncio.to_thread(sampler.sample, time.time_ns())
        if stream or one_shot or prev is not None:
            # stream=0 waits for a second sample so that precpu_stats is not zero
            body = stats.combine(sample, prev, cur["Name"], cid)
            await resp.write(json.dumps(body).encode() + b"\n")
            if not stream:
                break
        prev = sample
        await asyncio.sleep(_INTERVAL)
    await resp.write_eof()
    return resp
