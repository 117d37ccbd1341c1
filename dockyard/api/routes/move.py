"""Routes a cold move uses between two daemons (Dockyard's own, beside Docker's API).

    POST /dockyard/layers/missing            {"DiffIDs": [...]} -> {"Missing": [...]}
    GET  /dockyard/images/{id}/archive?skip=<diff id>...   the image, untagged, without
                                             the layers the target already has
    GET  /dockyard/containers/{id}/layer     a stopped container's writable layer (tar)
    PUT  /dockyard/containers/{id}/layer     fill a created container's empty writable layer
    GET  /dockyard/volumes/{name}/content    a volume's files (tar)
    PUT  /dockyard/volumes/{name}/content    fill an empty volume
    GET  /dockyard/move/capabilities         {"Cold": true, "Live": bool, "LiveProblem": why not}
    GET  /dockyard/containers/{id}/checkpoints/{name}/archive   a finished checkpoint (tar)
    PUT  /dockyard/containers/{id}/checkpoints/{name}/archive   receive one (live move)
    POST /dockyard/containers/{id}/move      the source's journal, before the stop/freeze
    POST /dockyard/containers/{id}/move/resolve   {"Outcome"?}: finish or undo it there
    POST /dockyard/moves/{id}/abort          the target decides: {"Outcome": committed|aborted}
    POST /dockyard/moves/{id}/arrived        the target's `move` event, with the CLI's figures

The images are then loaded with Docker's own `POST /images/load`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from dockyard.api import bodies, keys
from dockyard.api.app import Routes
from dockyard.api.routes.images import _stream_from_thread
from dockyard.api.schemas import json_body
from dockyard.errdefs import InvalidArgument

routes = Routes()


def _svc(request: web.Request) -> Any:
    return request.app[keys.TRANSFERS]


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(1 << 20):
        yield chunk


async def _tar(request: web.Request, produce: Any) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
    await resp.prepare(request)
    await _stream_from_thread(resp, produce)
    await resp.write_eof()
    return resp


@routes.post("/dockyard/layers/missing", body=bodies.MISSING_LAYERS)
async def missing_layers(request: web.Request) -> web.Response:
    body = await json_body(request)
    diff_ids = body.get("DiffIDs")
    if not isinstance(diff_ids, list) or not all(
        isinstance(d, str) and d.startswith("sha256:") for d in diff_ids
    ):
        raise InvalidArgument("DiffIDs must be a list of sha256 digests")
    return web.json_response({"Missing": _svc(request).missing_layers(diff_ids)})


@routes.get("/dockyard/images/{name:.+}/archive", query="skip:list")
async def image_archive(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    item = svc.image_item(request.match_info["name"])  # 404 before any byte
    skip = frozenset(request.query.getall("skip", []))
    return await _tar(request, lambda out: svc.write_image(item, skip, out))


@routes.get("/dockyard/containers/{id}/layer")
async def container_layer(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    upper: Path = svc.layer_source(request.match_info["id"])
    return await _tar(request, lambda out: svc.write_layer(upper, out))


@routes.put("/dockyard/containers/{id}/layer", body="stream")
async def fill_container_layer(request: web.Request) -> web.Response:
    await _svc(request).apply_layer(request.match_info["id"], _body(request))
    return web.Response(status=204)


@routes.get("/dockyard/volumes/{name}/content")
async def volume_content(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    root: Path = svc.volume_source(request.match_info["name"])

    def produce(out: IO[bytes]) -> None:
        svc.write_layer(root, out)

    return await _tar(request, produce)


@routes.put("/dockyard/volumes/{name}/content", body="stream")
async def fill_volume(request: web.Request) -> web.Response:
    await _svc(request).fill_volume(request.match_info["name"], _body(request))
    return web.Response(status=204)


@routes.get("/dockyard/containers/{id}/checkpoints/{name}/archive")
async def checkpoint_archive(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    cp: Path = svc.checkpoint_source(request.match_info["id"], request.match_info["name"])
    return await _tar(request, lambda out: svc.write_layer(cp, out))


@routes.put("/dockyard/containers/{id}/checkpoints/{name}/archive", body="stream")
async def receive_checkpoint(request: web.Request) -> web.Response:
    await _svc(request).receive_checkpoint(
        request.match_info["id"], request.match_info["name"], _body(request)
    )
    return web.Response(status=204)


@routes.get("/dockyard/move/capabilities")
async def capabilities(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).capabilities())


def _journal(request: web.Request) -> Any:
    return request.app[keys.MOVES]


@routes.post("/dockyard/containers/{id}/move", body=bodies.MOVE_LEAVE)
async def move_leave(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not body.get("ID") or not body.get("To"):
        raise InvalidArgument("ID and To are required")
    await _journal(request).leave(
        request.match_info["id"], str(body["ID"]), str(body["To"]), live=bool(body.get("Live")),
        checkpoint=str(body.get("Checkpoint") or ""), with_volumes=bool(body.get("WithVolumes")),
    )  # fmt: skip
    return web.Response(status=204)


@routes.post("/dockyard/containers/{id}/move/resolve", body=bodies.MOVE_RESOLVE)
async def move_resolve(request: web.Request) -> web.Response:
    body = await json_body(request)
    if body.get("Later"):
        _journal(request).settle_later(request.match_info["id"])
        return web.json_response({"Result": "pending"})
    result = await _journal(request).resolve(
        request.match_info["id"], body.get("Outcome") or None, body.get("Attributes") or None
    )
    return web.json_response({"Result": result})


@routes.post("/dockyard/moves/{id}/abort")
async def move_abort(request: web.Request) -> web.Response:
    return web.json_response(await _journal(request).abort(request.match_info["id"]))


@routes.post("/dockyard/moves/{id}/arrived", body=bodies.MOVE_ARRIVED)
async def move_arrived(request: web.Request) -> web.Response:
    body = await json_body(request)
    await _journal(request).arrived(request.match_info["id"], body.get("Attributes") or {})
    return web.Response(status=204)
