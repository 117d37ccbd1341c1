"""The aiohttp application: route table, middleware for versions, errors and headers.

Every route is registered twice, bare and under `/v{version}/`, because aiohttp resolves
routes before middleware runs. The middleware checks the version prefix, converts domain
errors into Docker's `{"message": ...}` bodies and adds the headers Docker's clients read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from dockyard import errdefs
from dockyard._sys.malloc import TrimWhenQuiet
from dockyard.api import versions
from dockyard.api.errors import status_for

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_COMMON_HEADERS = versions.COMMON_HEADERS


class Routes:
    """Collects (method, path, handler); `install` adds each bare and versioned."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, Handler]] = []

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.entries.append((method, path, fn))
            return fn

        return deco

    def get(self, path: str) -> Callable[[Handler], Handler]:
        return self.route("GET", path)

    def post(self, path: str) -> Callable[[Handler], Handler]:
        return self.route("POST", path)

    def put(self, path: str) -> Callable[[Handler], Handler]:
        return self.route("PUT", path)

    def delete(self, path: str) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path)

    def head(self, path: str) -> Callable[[Handler], Handler]:
        return self.route("HEAD", path)

    def install(self, app: web.Application) -> None:
        for method, path, fn in self.entries:
            for prefix in ("", "/v{api_version:[0-9]+\\.[0-9]+}"):
                app.router.add_route(method, prefix + path, fn)


def error_response(status: int, message: str) -> web.Response:
    # exactly "application/json": the docker CLI shows any other type's body raw
    return web.Response(
        body=json.dumps({"message": message}).encode(),
        status=status,
        headers={**_COMMON_HEADERS, "Content-Type": "application/json"},
    )


@web.middleware
async def docker_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await _handle(request, handler)
    finally:
        if request.method in ("POST", "PUT") or request.path.endswith(_TRANSFERS):
            _trim.touch()  # uploads, builds, layers and archives: see _sys/malloc.py


# GETs that move large amounts of data (save, archive, export, logs)
_TRANSFERS = ("/get", "/archive", "/export", "/logs")
_trim = TrimWhenQuiet()


async def _handle(request: web.Request, handler: Handler) -> web.StreamResponse:
    v = request.match_info.get("api_version")
    if v is not None:
        if versions.parse(v) > versions.parse(versions.API_VERSION):
            return error_response(
                400, f"client version {v} is too new. Maximum supported API version is {versions.API_VERSION}"
            )
        if versions.parse(v) < versions.parse(versions.MIN_API_VERSION):
            return error_response(
                400,
                f"client version {v} is too old. Minimum supported API version is "
                f"{versions.MIN_API_VERSION}, please upgrade your client to a newer version",
            )
    try:
        resp = await handler(request)
    except errdefs.NotModified:
        return web.Response(status=304, headers=_COMMON_HEADERS)
    except errdefs.DockyardError as exc:
        status = status_for(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc)
        return error_response(status, str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_response(exc.status, exc.text or exc.reason)
        raise
    except json.JSONDecodeError as exc:
        return error_response(400, f"invalid JSON: {exc}")
    except ConnectionError:
        transport = request.transport
        if transport is None or transport.is_closing():
            # the client went away mid-stream (docker stats, logs -f, events ^C): nothing to
            # answer and nothing to log; aiohttp fails to send this and drops the connection
            # quietly (raised on, it would log a traceback as a handler error)
            log.debug("%s %s: the client went away", request.method, request.path)
            return web.Response()
        raise
    except Exception as exc:  # a request root: log and convert; a 500 is a bug
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, f"internal error: {exc}")
    if not resp.prepared:
        for k, val in _COMMON_HEADERS.items():
            resp.headers.setdefault(k, val)
    return resp


async def _not_found(request: web.Request) -> web.StreamResponse:
    return error_response(404, "page not found")


def create_app(services: dict[web.AppKey[Any], Any], route_tables: list[Routes]) -> web.Application:
    app = web.Application(middlewares=[docker_middleware], client_max_size=0)
    for key, svc in services.items():
        app[key] = svc
    for table in route_tables:
        table.install(app)
    return app
