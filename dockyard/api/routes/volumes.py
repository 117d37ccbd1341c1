"""Volume routes: list, create, inspect, remove, prune.

API quirks live here: `POST /volumes/prune` before API 1.42 removes named volumes too (the
`all` filter came with 1.42, which made anonymous-only the default).
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from dockyard.api import bodies, keys, versions
from dockyard.api.app import Routes
from dockyard.api.schemas import filters, json_body, qbool
from dockyard.errdefs import InvalidArgument

routes = Routes()


class VolumeBackend(Protocol):
    def create(
        self, name: str | None = None, driver: str | None = None, driver_opts: dict[str, str] | None = None,
        labels: dict[str, str] | None = None, *, anonymous: bool = False,
    ) -> dict[str, Any]: ...  # fmt: skip

    def list_volumes(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]: ...

    def inspect(self, name: str) -> dict[str, Any]: ...

    async def remove(self, name: str, force: bool = False) -> None: ...

    async def prune(
        self, filters: dict[str, list[str]] | None = None, *, all_volumes: bool = False
    ) -> dict[str, Any]: ...


def _svc(request: web.Request) -> VolumeBackend:
    svc: VolumeBackend = request.app[keys.VOLUMES]
    return svc


def _dict(value: Any, field: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument(f"invalid {field}: expected an object")
    return {str(k): str(v) for k, v in value.items()}


@routes.get("/volumes", query="filters:json")
async def list_volumes(request: web.Request) -> web.Response:
    return web.json_response(_svc(request).list_volumes(filters(request)))


@routes.post("/volumes/create", body=bodies.VOLUME_CREATE)
async def create(request: web.Request) -> web.Response:
    body = await json_body(request, required=False)
    name = body.get("Name") or None
    vol = _svc(request).create(
        name, body.get("Driver") or None,
        _dict(body.get("DriverOpts"), "DriverOpts"), _dict(body.get("Labels"), "Labels"),
        anonymous=name is None,  # moby labels a volume it names itself anonymous: prune takes it
    )  # fmt: skip
    return web.json_response(vol, status=201)


@routes.get("/volumes/{name}")
async def inspect(request: web.Request) -> web.Response:
    return web.json_response(_svc(request).inspect(request.match_info["name"]))


@routes.delete("/volumes/{name}", query="force:boolean")
async def remove(request: web.Request) -> web.Response:
    await _svc(request).remove(request.match_info["name"], force=qbool(request, "force"))
    return web.Response(status=204)


@routes.post("/volumes/prune", query="filters:json")
async def prune(request: web.Request) -> web.Response:
    v = request.match_info.get("api_version")
    legacy = v is not None and versions.parse(v) < versions.parse("1.42")
    return web.json_response(await _svc(request).prune(filters(request), all_volumes=legacy))
