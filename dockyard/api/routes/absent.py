"""Routes of Docker features this daemon does not have: image search and BuildKit's
session and gRPC upgrades.

Each is routed so that a client gets a clear refusal with Docker's status instead of a 404
that reads like a wrong URL. Search needs Docker Hub's v1 search service, which neither
these machines nor the distribution API offer; BuildKit is not the builder here (`/_ping`
says `Builder-Version: 1`, so the docker CLI uses the classic `POST /build`).
"""

from __future__ import annotations

from aiohttp import web

from dockyard.api.app import Routes
from dockyard.errdefs import InvalidArgument, Unsupported

routes = Routes()


@routes.get("/images/search")
async def search(request: web.Request) -> web.StreamResponse:
    if not request.query.get("term"):
        raise InvalidArgument("search term is required")
    raise Unsupported("image search is not supported by this daemon: it needs a registry's v1 search service")


@routes.post("/session")
@routes.post("/grpc")
async def upgrade(request: web.Request) -> web.StreamResponse:
    if not request.headers.get("Upgrade"):
        raise InvalidArgument("no upgrade proto in request")  # moby's wording
    raise Unsupported("buildkit is not supported by this daemon; use the classic builder (DOCKER_BUILDKIT=0)")
