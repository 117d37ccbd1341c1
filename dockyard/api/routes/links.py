"""`DELETE /containers/{parent}/{alias}?link=1`: removing one legacy link.

A link's name is `/parent/alias`, and Docker's clients put it in the path as it is (the
docker CLI's `rm --link /web/db` asks for `/containers//web/db`), so the name spans two path
segments, with or without an empty one before it. Without `link=1` the name is a
container's, and no container's name has a slash: 404 as dockerd answers.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from dockyard.api import keys
from dockyard.api.app import Routes
from dockyard.api.schemas import qbool
from dockyard.errdefs import NotFound

routes = Routes()


class LinkBackend(Protocol):
    async def remove_link(self, parent: str, alias: str) -> None: ...


@routes.delete("/containers//{parent}/{alias}")
@routes.delete("/containers/{parent}/{alias}")
async def remove_link(request: web.Request) -> web.Response:
    parent, alias = request.match_info["parent"], request.match_info["alias"]
    if not qbool(request, "link"):
        raise NotFound(f"No such container: /{parent}/{alias}")
    svc: LinkBackend = request.app[keys.CONTAINERS]
    await svc.remove_link(parent, alias)
    return web.Response(status=204)
