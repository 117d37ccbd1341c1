"""Plugin routes of a daemon with no managed plugins.

Managed plugins are another issue's work. Until they land, this daemon is a Docker daemon on
which no plugin was ever installed: the list is empty, every named plugin is not found
(moby's wording), and the requests that would fetch or build a plugin are refused with 501
rather than accepted and dropped.
"""

from __future__ import annotations

from aiohttp import web

from dockyard.api.app import Routes
from dockyard.api.schemas import check_filter_keys, filters
from dockyard.errdefs import NotFound, Unsupported

routes = Routes()


def _not_found(name: str) -> NotFound:
    return NotFound(f'plugin "{name}" not found')


@routes.get("/plugins")
async def list_plugins(request: web.Request) -> web.Response:
    check_filter_keys(filters(request), {"capability", "enable"})
    return web.json_response([])


@routes.get("/plugins/{name:.+}/json")
async def inspect(request: web.Request) -> web.StreamResponse:
    raise _not_found(request.match_info["name"])


@routes.delete("/plugins/{name:.+}")
async def remove(request: web.Request) -> web.StreamResponse:
    raise _not_found(request.match_info["name"])


@routes.post("/plugins/{name:.+}/enable")
@routes.post("/plugins/{name:.+}/disable")
@routes.post("/plugins/{name:.+}/push")
@routes.post("/plugins/{name:.+}/set")
async def named(request: web.Request) -> web.StreamResponse:
    raise _not_found(request.match_info["name"])


@routes.post("/plugins/{name:.+}/upgrade")
async def upgrade(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    raise _not_found(name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest")


@routes.get("/plugins/privileges")
@routes.post("/plugins/pull")
@routes.post("/plugins/create")
async def install(request: web.Request) -> web.StreamResponse:
    raise Unsupported("managed plugins are not supported by this daemon")
