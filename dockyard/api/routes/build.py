"""Build routes: `POST /build` (the classic builder's API) and `POST /build/prune`.

HTTP adapter only. The response starts lazily, like dockerd's: an error before the build
printed anything (a bad parameter, a Dockerfile syntax error, an unknown target) is a
plain HTTP error the CLI shows as "Error response from daemon: ..."; once the JSON
stream has started, a failure is an `errorDetail` message (code = a RUN's exit status,
which the docker CLI exits with).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from aiohttp import web

from dockyard import errdefs
from dockyard.api import keys
from dockyard.api.app import Routes
from dockyard.api.buildprogress import render
from dockyard.api.schemas import filters, loads, qbool, qint
from dockyard.build.progress import BuildEvent, Emit
from dockyard.build.service import BuildOptions, Upload

log = logging.getLogger(__name__)

routes = Routes()


class _BuildBackend(Protocol):  # what these routes call on BuildService
    async def receive(self, chunks: AsyncIterator[bytes], dockerfile: str) -> Upload: ...
    async def build(self, body: Upload | None, opts: BuildOptions, emit: Emit, *, remote: str = ...) -> str: ...
    async def prune(self, *, all: bool = ..., filters: dict[str, list[str]] | None = ...) -> dict[str, Any]: ...


def _svc(request: web.Request) -> _BuildBackend:
    return request.app[keys.BUILDS]


def _json_param(request: web.Request, name: str, kind: type) -> Any:
    raw = request.query.get(name)
    if not raw:
        return kind()
    val = loads(raw, name)
    if not isinstance(val, kind):
        raise errdefs.InvalidArgument(f"invalid {name}: expected a JSON {kind.__name__}")
    return val


def _refuse_unsupported(request: web.Request) -> None:
    """What dockerd (not experimental, on Linux) refuses, with its words, rather than build
    something else than was asked."""
    if qbool(request, "squash"):
        raise errdefs.InvalidArgument("squash is only supported with experimental mode")
    isolation = request.query.get("isolation", "")
    if isolation.lower() not in ("", "default"):
        raise errdefs.InvalidArgument(f'unsupported isolation: "{isolation}"')


def _options(request: web.Request) -> BuildOptions:
    _refuse_unsupported(request)
    q = request.query
    hosts: list[str] = []
    for h in q.getall("extrahosts", []):
        hosts += [x for x in h.split(",") if x]
    buildargs = _json_param(request, "buildargs", dict)
    labels = _json_param(request, "labels", dict)
    return BuildOptions(
        tags=[t for t in q.getall("t", []) if t],
        dockerfile=q.get("dockerfile") or "Dockerfile",
        buildargs={str(k): (None if v is None else str(v)) for k, v in buildargs.items()},
        labels={str(k): str(v) for k, v in labels.items()},
        target=q.get("target", ""),
        nocache=qbool(request, "nocache"),
        rm=qbool(request, "rm", True),
        forcerm=qbool(request, "forcerm"),
        pull=qbool(request, "pull"),
        networkmode=q.get("networkmode", ""),
        extrahosts=hosts,
        shmsize=qint(request, "shmsize", 0) or 0,
        memory=qint(request, "memory", 0) or 0,
        memswap=qint(request, "memswap", 0) or 0,
        cpushares=qint(request, "cpushares", 0) or 0,
        cpusetcpus=q.get("cpusetcpus", ""),
        cpuperiod=qint(request, "cpuperiod", 0) or 0,
        cpuquota=qint(request, "cpuquota", 0) or 0,
        platform=q.get("platform", ""),
        quiet=qbool(request, "q"),
        registry_config=request.headers.get("X-Registry-Config"),
        cachefrom=[str(x) for x in _json_param(request, "cachefrom", list)],
    )


@routes.post(
    "/build",
    query="t:list dockerfile buildargs:json labels:json target nocache:boolean rm:boolean forcerm:boolean "
    "pull:boolean networkmode extrahosts:list shmsize:integer memory:integer memswap:integer "
    "cpushares:integer cpusetcpus cpuperiod:integer cpuquota:integer platform q:boolean cachefrom:json remote "
    "squash:boolean isolation",
    body="stream",
)
async def build(request: web.Request) -> web.StreamResponse:
    opts = _options(request)
    remote = request.query.get("remote", "")
    svc = _svc(request)
    body = None
    if not remote:
        body = await svc.receive(request.content.iter_any(), opts.dockerfile)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})

    async def send(msg: dict[str, Any]) -> None:
        if not resp.prepared:
            await resp.prepare(request)
        await resp.write(json.dumps(msg).encode() + b"\r\n")

    async def emit(event: BuildEvent) -> None:
        await send(render(event))

    try:
        await svc.build(body, opts, emit, remote=remote)
    except errdefs.DockyardError as err:
        if not resp.prepared:
            raise
        code = int(getattr(err, "code", 1) or 1)
        await send({"errorDetail": {"code": code, "message": str(err)}, "error": str(err)})
    except Exception as err:  # a request root: the stream has started, report in it
        if not resp.prepared:
            raise
        log.exception("build failed")
        await send({"errorDetail": {"message": str(err)}, "error": str(err)})
    finally:
        if body is not None:
            body.discard()
    if not resp.prepared:
        await resp.prepare(request)
    await resp.write_eof()
    return resp


_SIZE_LIMITS = ("keep-storage", "reserved-space", "max-used-space", "min-free-space")


@routes.post("/build/prune", query="all:boolean filters:json " + " ".join(f"{k}:integer" for k in _SIZE_LIMITS))
async def prune(request: web.Request) -> web.Response:
    for key in _SIZE_LIMITS:  # BuildKit's storage targets: the classic builder's cache has none
        if qint(request, key, 0):
            raise errdefs.InvalidArgument(f"{key} is not supported by this daemon's build cache (no BuildKit)")
    res = await _svc(request).prune(all=qbool(request, "all"), filters=filters(request))
    return web.json_response(res)


@routes.post("/build/cancel")
async def cancel(request: web.Request) -> web.Response:
    return web.Response(status=200)
