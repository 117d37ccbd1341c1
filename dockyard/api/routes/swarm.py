"""Swarm and node routes: /swarm (init, join, leave, update, unlockkey) and /nodes.

On a daemon not in a swarm every route answers 503 "This node is not part of a swarm",
and manager-only routes on a worker answer Docker's 503 "This node is not a swarm
manager...". The swarm service decides both; this module only parses and shapes.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from dockyard.api import bodies, keys
from dockyard.api.app import Routes
from dockyard.api.schemas import filters, json_body, qbool, qint
from dockyard.errdefs import InvalidArgument, Unavailable

routes = Routes()


class SwarmBackend(Protocol):
    async def init(self, req: dict[str, Any]) -> str: ...
    async def join(self, req: dict[str, Any]) -> None: ...
    async def leave(self, force: bool) -> None: ...
    async def inspect(self) -> dict[str, Any]: ...
    async def update(self, spec: dict[str, Any], version: int | None, rotate_worker: bool, rotate_manager: bool,
                     rotate_unlock: bool) -> None: ...  # fmt: skip
    def unlock_key(self) -> dict[str, str]: ...
    async def list_nodes(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]: ...
    async def inspect_node(self, ref: str) -> dict[str, Any]: ...
    async def update_node(self, ref: str, version: int | None, spec: dict[str, Any]) -> None: ...
    async def remove_node(self, ref: str, force: bool) -> None: ...


def _svc(request: web.Request) -> SwarmBackend:
    svc: SwarmBackend = request.app[keys.SWARM]
    return svc


@routes.post("/swarm/init", body=bodies.SWARM_INIT)
async def init(request: web.Request) -> web.Response:
    body = await json_body(request)
    return web.json_response(await _svc(request).init(body))


@routes.post("/swarm/join", body=bodies.SWARM_JOIN)
async def join(request: web.Request) -> web.Response:
    body = await json_body(request)
    await _svc(request).join(body)
    return web.Response(status=200)


@routes.post("/swarm/leave", query="force:boolean")
async def leave(request: web.Request) -> web.Response:
    await _svc(request).leave(qbool(request, "force"))
    return web.Response(status=200)


@routes.get("/swarm")
async def inspect(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).inspect())


@routes.post("/swarm/update", query="version:integer rotateWorkerToken:boolean rotateManagerToken:boolean rotateManagerUnlockKey:boolean", body=bodies.SWARM_SPEC)
async def update(request: web.Request) -> web.Response:
    body = await json_body(request, required=False)
    await _svc(request).update(
        body, qint(request, "version"), qbool(request, "rotateWorkerToken"), qbool(request, "rotateManagerToken"),
        qbool(request, "rotateManagerUnlockKey"),
    )  # fmt: skip
    return web.Response(status=200)


@routes.get("/swarm/unlockkey")
async def unlock_key(request: web.Request) -> web.Response:
    return web.json_response(_svc(request).unlock_key())


@routes.post("/swarm/unlock")
async def unlock(request: web.Request) -> web.Response:
    _svc(request).unlock_key()  # not in a swarm / not a manager: the same 503s
    raise Unavailable("swarm is not locked")


@routes.get("/nodes", query="filters:json")
async def list_nodes(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).list_nodes(filters(request)))


@routes.get("/nodes/{id}")
async def inspect_node(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).inspect_node(request.match_info["id"]))


@routes.delete("/nodes/{id}", query="force:boolean")
async def remove_node(request: web.Request) -> web.Response:
    await _svc(request).remove_node(request.match_info["id"], qbool(request, "force"))
    return web.Response(status=200)


@routes.post("/nodes/{id}/update", query="version:integer", body=bodies.NODE_SPEC)
async def update_node(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidArgument("invalid node spec: expected an object")
    await _svc(request).update_node(request.match_info["id"], qint(request, "version"), body)
    return web.Response(status=200)


@routes.put("/volumes/{name}")
async def cluster_volume_update(request: web.Request) -> web.StreamResponse:
    # API 1.42: only cluster volumes can be updated, and this daemon has none
    raise Unavailable("volume update only valid for cluster volumes, but swarm is unavailable")
