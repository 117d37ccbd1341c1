"""Image routes: list, inspect, history, tag, remove, prune, import, pull, load, save.

HTTP adapter only: parses Docker's query strings and bodies, calls `ImageService`, and
shapes results per API version (`VirtualSize` gone in 1.44, `Container` and
`ContainerConfig` gone in 1.45). Names may contain slashes, so the `{name:.+}` routes
come after the fixed ones and each ends in its own suffix.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import IO, Any, Protocol

from aiohttp import web

from dockyard.api import compat, keys, progress, versions
from dockyard.api.app import Routes
from dockyard.api.schemas import filters, qbool
from dockyard.errdefs import DockyardError, InvalidArgument
from dockyard.images.progress import ImageLoaded, LayerEvent

routes = Routes()

_JSON = "application/json"


class _ImageBackend(Protocol):  # what these routes call on ImageService
    def resolve(self, ref: str) -> Any: ...
    def familiar(self, ref: str) -> str: ...
    def image_json(self, image: Any) -> dict[str, Any]: ...
    def history(self, image: Any) -> list[dict[str, Any]]: ...
    def list_images(self, *, all: bool = ..., filters: dict[str, list[str]] | None = ...) -> list[dict[str, Any]]: ...
    async def tag(self, source: str, repo: str, tag: str | None) -> Any: ...
    async def delete(self, ref: str, *, force: bool = ..., noprune: bool = ...) -> list[dict[str, str]]: ...
    async def prune(self, filters: dict[str, list[str]] | None = ...) -> dict[str, Any]: ...
    async def spool(self, chunks: Any) -> Path: ...
    async def import_image(self, source: Path, **kw: Any) -> Any: ...
    def load(self, source: Path) -> AsyncGenerator[LayerEvent | ImageLoaded, None]: ...
    def save_items(self, names: list[str]) -> list[Any]: ...
    def write_save(self, items: list[Any], out: IO[bytes]) -> None: ...
    def publish_saved(self, items: list[Any]) -> None: ...


def _svc(request: web.Request) -> _ImageBackend:
    return request.app[keys.IMAGES]  # type: ignore[no-any-return]


def _version(request: web.Request) -> tuple[int, int]:
    return versions.parse(request.match_info.get("api_version") or versions.API_VERSION)


async def _json_lines(request: web.Request, lines: list[dict[str, Any]]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": _JSON})
    await resp.prepare(request)
    for line in lines:
        await resp.write(json.dumps(line).encode() + b"\r\n")
    await resp.write_eof()
    return resp


# -- fixed paths first ------------------------------------------------------------------


@routes.get(
    "/images/json", query="all:boolean filters:json filter"
)
async def list_images(request: web.Request) -> web.Response:
    f = filters(request)
    legacy = request.query.get("filter")
    if legacy and compat.legacy_image_filter(_version(request)):  # API < 1.41 `filter=<reference>`
        f.setdefault("reference", []).append(legacy)
    out = _svc(request).list_images(all=qbool(request, "all"), filters=f)
    if _version(request) >= (1, 44):
        for s in out:
            s.pop("VirtualSize", None)
    if _version(request) < (1, 43):
        for s in out:  # before 1.43 an untagged image showed placeholders, not empty lists
            if not s["RepoTags"] and not s["RepoDigests"]:
                s["RepoTags"], s["RepoDigests"] = ["<none>:<none>"], ["<none>@<none>"]
    return web.json_response(out)


@routes.post(
    "/images/create", query="fromImage fromSrc repo tag message changes:list platform", body="stream", stream=True
)
async def create(request: web.Request) -> web.StreamResponse:
    from_image = request.query.get("fromImage", "")
    from_src = request.query.get("fromSrc", "")
    if from_image:
        return await _pull(request, from_image, request.query.get("tag", ""))
    if not from_src:
        raise InvalidArgument("fromImage or fromSrc is required")
    if from_src != "-":
        raise InvalidArgument(f"importing from {from_src!r} is not supported; send the tarball as the body")
    svc = _svc(request)
    path = await svc.spool(request.content.iter_chunked(1 << 16))
    try:
        img = await svc.import_image(
            path,
            repo=request.query.get("repo") or None,
            tag=request.query.get("tag") or None,
            changes=request.query.getall("changes", []),
            message=request.query.get("message", ""),
            platform=request.query.get("platform") or None,
        )
    finally:
        path.unlink(missing_ok=True)
    return await _json_lines(request, [{"status": img.id}])


async def _pull(request: web.Request, from_image: str, tag: str) -> web.StreamResponse:
    from dockyard.api.routes import distribution

    return await distribution.pull(request, from_image, tag)


@routes.post("/images/load", query="quiet:boolean", body="stream", stream=True)
async def load(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    quiet = qbool(request, "quiet")
    path = await svc.spool(request.content.iter_chunked(1 << 16))
    resp = web.StreamResponse(headers={"Content-Type": _JSON})
    events = svc.load(path)
    try:
        async for ev in events:
            if quiet and isinstance(ev, LayerEvent):
                continue
            if not resp.prepared:
                await resp.prepare(request)
            await resp.write(b"".join(json.dumps(m).encode() + b"\r\n" for m in progress.render(ev)))
    except DockyardError as err:
        # dockerd answers 200 at once and reports any failure, a bad archive included, inside
        # the JSON stream: that is where the docker CLI and docker-py look for it
        if not resp.prepared:
            await resp.prepare(request)
        failed = {"errorDetail": {"message": str(err)}, "error": str(err)}
        await resp.write(json.dumps(failed).encode() + b"\r\n")
    finally:
        await events.aclose()
        path.unlink(missing_ok=True)
    if not resp.prepared:
        await resp.prepare(request)
    await resp.write_eof()
    return resp


@routes.post("/images/prune", query="filters:json")
async def prune(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).prune(filters(request)))


@routes.get("/images/get", query="names:list", stream=True)
async def save_many(request: web.Request) -> web.StreamResponse:
    names = request.query.getall("names", [])
    if not names:
        raise InvalidArgument("no images specified")
    return await _save(request, names)


# -- /images/{name}/... -----------------------------------------------------------------


@routes.get("/images/{name:.+}/json")
async def inspect(request: web.Request) -> web.Response:
    svc = _svc(request)
    out = svc.image_json(svc.resolve(request.match_info["name"]))
    v = _version(request)
    if v >= (1, 44):
        out.pop("VirtualSize", None)
    if v >= (1, 45):
        out.pop("Container", None)
        out.pop("ContainerConfig", None)
    return web.json_response(out)


@routes.get("/images/{name:.+}/history")
async def history(request: web.Request) -> web.Response:
    svc = _svc(request)
    return web.json_response(svc.history(svc.resolve(request.match_info["name"])))


@routes.post("/images/{name:.+}/tag", query="repo tag")
async def tag(request: web.Request) -> web.Response:
    repo = request.query.get("repo", "")
    await _svc(request).tag(request.match_info["name"], repo, request.query.get("tag") or None)
    return web.Response(status=201)


@routes.get("/images/{name:.+}/get", stream=True)
async def save_one(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


@routes.delete("/images/{name:.+}", query="force:boolean noprune:boolean")
async def delete(request: web.Request) -> web.Response:
    records = await _svc(request).delete(
        request.match_info["name"], force=qbool(request, "force"), noprune=qbool(request, "noprune")
    )
    return web.json_response(records)


# -- save: a tar produced in a worker thread, streamed to the client ---------------------


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    svc = _svc(request)
    items = svc.save_items(names)  # resolves every name first: a 404 before any byte
    resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
    await resp.prepare(request)
    await _stream_from_thread(resp, lambda out: svc.write_save(items, out))
    await resp.write_eof()
    svc.publish_saved(items)
    return resp


class _QueueWriter:
    """A file-like sink for a worker thread that hands buffered chunks to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, q: asyncio.Queue[Any], stop: threading.Event) -> None:
        self._loop = loop
        self._q = q
        self._stop = stop
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= 1 << 18:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            self._put(bytes(self._buf))
            self._buf.clear()

    def _put(self, item: Any) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._q.put(item), self._loop)
        while True:
            if self._stop.is_set():
                fut.cancel()
                raise BrokenPipeError("client went away")
            try:
                fut.result(timeout=0.5)
                return
            except TimeoutError:
                continue


async def _stream_from_thread(resp: web.StreamResponse, produce: Callable[[Any], None]) -> None:
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[Any] = asyncio.Queue(maxsize=16)
    stop = threading.Event()
    writer = _QueueWriter(loop, q, stop)
    done = object()

    def run() -> None:
        try:
            produce(writer)
            writer.flush()
            writer._put(done)
        except BrokenPipeError:
            pass
        except BaseException as err:  # handed to the loop, which re-raises it
            try:
                writer._put(err)
            except BrokenPipeError:
                pass

    worker = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        while True:
            item = await q.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            await resp.write(item)
    finally:
        stop.set()
        while not q.empty():
            q.get_nowait()
        await worker
