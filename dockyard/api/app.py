"""The aiohttp application: route table, middleware for versions, errors, headers and limits.

Every route is registered twice, bare and under `/v{version}/`, because aiohttp resolves
routes before middleware runs. Each route declares its query parameters and the kind of
body it takes (a JSON schema from `api/bodies.py`, a streamed upload, or none); `openapi.py`
builds our API document from those declarations. The middleware checks the version prefix,
refuses an oversized body on any route that does not stream its upload, converts domain
errors into Docker's `{"message": ...}` bodies and adds the headers Docker's clients read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from dockyard import errdefs
from dockyard._sys.malloc import TrimWhenQuiet
from dockyard.api import schemas, versions
from dockyard.api.bodies import Schema
from dockyard.api.errors import status_for

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_COMMON_HEADERS = versions.COMMON_HEADERS


QueryKind = Literal["string", "boolean", "integer", "json", "list"]
BodyKind = Schema | Literal["stream"] | None


@dataclass(frozen=True)
class RouteSpec:
    """One route as declared: `query` maps each parameter to its kind ("list" = repeatable);
    `body` is the JSON schema of its body, "stream" for an uncapped upload, or None."""

    method: str
    path: str
    handler: Handler
    query: dict[str, QueryKind]
    body: BodyKind
    stream: bool  # the response is a long stream (events, logs, wait, hijack)


def parse_query_spec(spec: str) -> dict[str, QueryKind]:
    """"t:integer signal" -> {"t": "integer", "signal": "string"}."""
    out: dict[str, QueryKind] = {}
    for word in spec.split():
        name, _, kind = word.partition(":")
        out[name] = kind or "string"  # type: ignore[assignment]
    return out


class Routes:
    """Collects the route declarations; `install` adds each bare and versioned."""

    def __init__(self) -> None:
        self.entries: list[RouteSpec] = []

    def route(
        self, method: str, path: str, *, query: str = "", body: BodyKind = None, stream: bool = False
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.entries.append(RouteSpec(method, path, fn, parse_query_spec(query), body, stream))
            return fn

        return deco

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)

    def head(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("HEAD", path, **kw)

    def install(self, app: web.Application) -> None:
        specs = app[ROUTE_SPECS]
        for spec in self.entries:
            for prefix in ("", "/v{api_version:[0-9]+\\.[0-9]+}"):
                specs[app.router.add_route(spec.method, prefix + spec.path, spec.handler)] = spec


ROUTE_SPECS: web.AppKey[dict[web.AbstractRoute, RouteSpec]] = web.AppKey("route_specs", dict)


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
    spec = request.app[ROUTE_SPECS].get(request.match_info.route)
    if spec is not None and spec.body != "stream":
        # only the streamed uploads may exceed a JSON body; refuse before reading a byte
        if request.content_length is not None and request.content_length > schemas.MAX_JSON_BODY:
            refused = error_response(413, schemas.BodyTooLarge().text or "")
            refused.force_close()  # the unread body must not be parsed as the next request
            return refused
        if spec.body is not None:
            request[schemas.ROUTE_BODY] = spec.body
    try:
        resp = await handler(request)
    except errdefs.NotModified:
        return web.Response(status=304, headers=_COMMON_HEADERS)
    except errdefs.DockyardError as exc:
        status = status_for(exc)
        if status >= 500 and not isinstance(exc, errdefs.Unavailable | errdefs.Unsupported):  # 501/503: no bug
            log.error("%s %s: %s", request.method, request.path, exc)
        return error_response(status, str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400:
            err = error_response(exc.status, exc.text or exc.reason)
            if exc.status == 413:
                err.force_close()  # do not read the rest of an oversized body
            return err
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
    app[ROUTE_SPECS] = {}
    for key, svc in services.items():
        app[key] = svc
    for table in route_tables:
        table.install(app)
    return app
