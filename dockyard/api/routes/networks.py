"""Network routes: list, inspect, create, remove, prune, connect, disconnect."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard import errdefs
from dockyard.api import bodies, keys
from dockyard.api.app import Routes
from dockyard.api.schemas import filters, json_body

routes = Routes()


def _svc(request: web.Request) -> Any:
    return request.app[keys.NETWORKS]


@routes.get("/networks", query="filters:json")
async def list_networks(request: web.Request) -> web.Response:
    return web.json_response(_svc(request).list(filters(request)))


@routes.get("/networks/{id}")
async def inspect(request: web.Request) -> web.Response:
    return web.json_response(_svc(request).inspect(request.match_info["id"]))


@routes.post("/networks/create", body=bodies.NETWORK_CREATE)
async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    return web.json_response(await _svc(request).create(body), status=201)


@routes.delete("/networks/{id}")
async def remove(request: web.Request) -> web.Response:
    await _svc(request).remove(request.match_info["id"])
    return web.Response(status=204)


@routes.post("/networks/prune", query="filters:json")
async def prune(request: web.Request) -> web.Response:
    return web.json_response({"NetworksDeleted": await _svc(request).prune(filters(request))})


@routes.post("/networks/{id}/connect", body=bodies.NETWORK_CONNECT)
async def connect(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not body.get("Container"):
        raise errdefs.InvalidArgument("no container specified")
    await _svc(request).connect(request.match_info["id"], body["Container"], body.get("EndpointConfig"))
    return web.Response(status=200)


@routes.post("/networks/{id}/disconnect", body=bodies.NETWORK_DISCONNECT)
async def disconnect(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not body.get("Container"):
        raise errdefs.InvalidArgument("no container specified")
    await _svc(request).disconnect(request.match_info["id"], body["Container"], bool(body.get("Force")))
    return web.Response(status=200)

