"""Checkpoint routes (Docker's experimental API): create, list and delete a container's
checkpoints. Restoring one is `POST /containers/{id}/start?checkpoint=` (containers.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.api import bodies, keys
from dockyard.api.app import Routes
from dockyard.api.schemas import json_body
from dockyard.errdefs import InvalidArgument

routes = Routes()


def _svc(request: web.Request) -> Any:
    return request.app[keys.CHECKPOINTS]


def _opt_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"{key} must be a string")
    return value


@routes.post("/containers/{id}/checkpoints", body=bodies.CHECKPOINT_CREATE)
async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    exit_ = body.get("Exit", False)
    if not isinstance(exit_, bool):
        raise InvalidArgument("Exit must be a boolean")
    tcp = body.get("TCPEstablished", False)  # Dockyard's: a live move keeps connections
    if not isinstance(tcp, bool):
        raise InvalidArgument("TCPEstablished must be a boolean")
    await _svc(request).create(
        request.match_info["id"],
        _opt_str(body, "CheckpointID"),
        _opt_str(body, "CheckpointDir") or None,
        exit_,
        tcp_established=tcp,
    )
    return web.Response(status=201)


@routes.get("/containers/{id}/checkpoints", query="dir")
async def list_checkpoints(request: web.Request) -> web.Response:
    return web.json_response(_svc(request).list(request.match_info["id"], request.query.get("dir") or None))


@routes.delete("/containers/{id}/checkpoints/{checkpoint}", query="dir")
async def delete(request: web.Request) -> web.Response:
    await _svc(request).delete(
        request.match_info["id"], request.match_info["checkpoint"], request.query.get("dir") or None
    )
    return web.Response(status=204)
