"""Registry routes of the engine: push, login (`POST /auth`), `GET /distribution/{name}/json`,
and the progress stream the pull branch of `POST /images/create` shares.

HTTP adapter only: reads `X-Registry-Auth`, calls the distribution service and writes
Docker's JSON progress stream. dockerd's rule for stream errors: an error before the
first message is an ordinary HTTP error (the CLI prints "Error response from daemon"),
later ones arrive in the stream as `errorDetail`, since the status is already 200.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from typing import Any, Protocol

from aiohttp import web

from dockyard import errdefs
from dockyard.api import bodies, keys, progress
from dockyard.api.app import Routes, error_response
from dockyard.api.schemas import json_body
from dockyard.images.progress import Event

routes = Routes()

log = logging.getLogger(__name__)


class _DistributionBackend(Protocol):  # what these routes call on DistributionService
    def pull(
        self, name: str, tag: str, auth_header: str | None, platform: str | None = ...
    ) -> AsyncGenerator[Event, None]: ...
    def push(self, name: str, tag: str, auth_header: str | None) -> AsyncGenerator[Event, None]: ...
    async def login(self, body: dict[str, Any]) -> dict[str, str]: ...
    async def inspect(self, name: str, auth_header: str | None) -> dict[str, Any]: ...


def _svc(request: web.Request) -> _DistributionBackend:
    return request.app[keys.DISTRIBUTION]  # type: ignore[no-any-return]


async def progress_stream(
    request: web.Request, messages: AsyncGenerator[dict[str, Any], None]
) -> web.StreamResponse:  # messages: see api/progress.py
    """Write messages as JSON lines; errors after the first one go into the stream."""
    first = await anext(messages, None)  # an error here propagates as an HTTP error
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        msg = first
        while msg is not None:
            await resp.write(json.dumps(msg).encode() + b"\r\n")
            msg = await anext(messages, None)
    except errdefs.DockyardError as err:
        await resp.write(
            json.dumps({"errorDetail": {"message": str(err)}, "error": str(err)}).encode() + b"\r\n"
        )
    except (ConnectionResetError, OSError) as err:  # the client went away
        log.info("%s %s: client gone: %s", request.method, request.path, err)
        await messages.aclose()
        return resp
    except Exception as err:  # a request root: log and report in-stream
        log.exception("%s %s failed", request.method, request.path)
        text = f"internal error: {err}"
        await resp.write(json.dumps({"errorDetail": {"message": text}, "error": text}).encode() + b"\r\n")
    await resp.write_eof()
    return resp


async def pull(request: web.Request, from_image: str, tag: str) -> web.StreamResponse:
    svc = _svc(request)
    events = svc.pull(from_image, tag, request.headers.get("X-Registry-Auth"), request.query.get("platform"))
    return await progress_stream(request, progress.messages(events))


@routes.post("/images/{name:.+}/push", query="tag", stream=True)
async def push(request: web.Request) -> web.StreamResponse:
    events = _svc(request).push(
        request.match_info["name"], request.query.get("tag", ""), request.headers.get("X-Registry-Auth")
    )
    return await progress_stream(request, progress.messages(events))


@routes.post("/auth", body=bodies.AUTH_CONFIG)
async def auth(request: web.Request) -> web.Response:
    body = await json_body(request, required=False)
    try:
        out = await _svc(request).login(body)
    except errdefs.PermissionDenied as err:  # dockerd answers a refused login with 401
        return error_response(401, str(err))
    return web.json_response(out)


@routes.get("/distribution/{name:.+}/json")
async def distribution_inspect(request: web.Request) -> web.Response:
    try:
        out = await _svc(request).inspect(request.match_info["name"], request.headers.get("X-Registry-Auth"))
    except errdefs.PermissionDenied as err:
        return error_response(401, str(err))
    return web.json_response(out)
