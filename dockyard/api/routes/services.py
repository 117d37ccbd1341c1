"""Service, task, secret and config routes (swarm mode; a manager answers them).

Docker quirks kept here: `POST /services/create` answers 201 `{"ID", "Warnings"}`;
`POST /services/{id}/update` needs `?version=` and takes `rollback=previous`; service
logs are multiplexed frames whose lines carry the task's swarm labels as "details".
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol

from aiohttp import web

from dockyard import errdefs
from dockyard.api import bodies, keys
from dockyard.api.app import Routes
from dockyard.api.schemas import filters, json_body, qbool, qint
from dockyard.api.streams import long_lived
from dockyard.cluster.tasklogs import LogQuery

routes = Routes()


class ClusterBackend(Protocol):
    async def create_service(self, spec: dict[str, Any]) -> dict[str, Any]: ...
    async def update_service(self, ref: str, version: int | None, spec: dict[str, Any], rollback: str = ""
                             ) -> list[str]: ...  # fmt: skip
    async def remove_service(self, ref: str) -> None: ...
    async def list_services(self, filters: dict[str, list[str]], status: bool) -> list[dict[str, Any]]: ...
    async def inspect_service(self, ref: str, status: bool = False) -> dict[str, Any]: ...
    async def list_tasks(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]: ...
    async def inspect_task(self, ref: str) -> dict[str, Any]: ...
    async def create_object(self, kind: str, spec: dict[str, Any]) -> dict[str, str]: ...
    async def list_objects(self, kind: str, filters: dict[str, list[str]]) -> list[dict[str, Any]]: ...
    async def inspect_object(self, kind: str, ref: str) -> dict[str, Any]: ...
    async def remove_object(self, kind: str, ref: str) -> None: ...
    def log_frames(self, ref: str, task: bool, q: LogQuery) -> AsyncIterator[bytes]: ...


def _svc(request: web.Request) -> ClusterBackend:
    svc: ClusterBackend = request.app[keys.CLUSTER]
    return svc


@routes.post("/services/create", body=bodies.SERVICE_SPEC)
async def create_service(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).create_service(await json_body(request)), status=201)


@routes.get("/services")
async def list_services(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).list_services(filters(request), qbool(request, "status")))


@routes.get("/services/{id}")
async def inspect_service(request: web.Request) -> web.Response:
    return web.json_response(
        await _svc(request).inspect_service(request.match_info["id"], qbool(request, "status"))
    )


@routes.delete("/services/{id}")
async def remove_service(request: web.Request) -> web.Response:
    await _svc(request).remove_service(request.match_info["id"])
    return web.Response(status=200)


@routes.post("/services/{id}/update", query="version:integer registryAuthFrom rollback", body=bodies.SERVICE_SPEC)
async def update_service(request: web.Request) -> web.Response:
    body = await json_body(request, required=False)
    warnings = await _svc(request).update_service(
        request.match_info["id"], qint(request, "version"), body, request.query.get("rollback", "")
    )
    return web.json_response({"Warnings": warnings or None})


@routes.get("/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).list_tasks(filters(request)))


@routes.get("/tasks/{id}")
async def inspect_task(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).inspect_task(request.match_info["id"]))


async def _logs(request: web.Request, task: bool) -> web.StreamResponse:
    want_out, want_err = qbool(request, "stdout"), qbool(request, "stderr")
    if not (want_out or want_err):
        raise errdefs.InvalidArgument("Bad parameters: you must choose at least one stream")
    if qbool(request, "follow"):
        raise errdefs.Unsupported("following service logs is not supported yet; omit --follow")
    tail_s = request.query.get("tail", "all")
    tail = None if tail_s in ("all", "") else int(tail_s) if tail_s.lstrip("-").isdigit() else None
    q = LogQuery(want_out, want_err, qbool(request, "details"), qbool(request, "timestamps"), tail)
    frames = _svc(request).log_frames(request.match_info["id"], task, q)
    first = await anext(frames, b"")  # a missing service is a 404 before any header
    resp = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.multiplexed-stream"})
    await resp.prepare(request)
    with contextlib.suppress(ConnectionResetError), long_lived():
        if first:
            await resp.write(first)
        async for chunk in frames:
            await resp.write(chunk)
        await resp.write_eof()
    return resp


@routes.get("/services/{id}/logs")
async def service_logs(request: web.Request) -> web.StreamResponse:
    return await _logs(request, task=False)


@routes.get("/tasks/{id}/logs")
async def task_logs(request: web.Request) -> web.StreamResponse:
    return await _logs(request, task=True)


for _kind in ("secrets", "configs"):

    def _make(kind: str) -> None:
        @routes.post(f"/{kind}/create", body=bodies.SECRET_SPEC if kind == "secrets" else bodies.CONFIG_SPEC)
        async def create(request: web.Request) -> web.Response:
            return web.json_response(
                await _svc(request).create_object(kind, await json_body(request)), status=201
            )

        @routes.get(f"/{kind}")
        async def list_(request: web.Request) -> web.Response:
            return web.json_response(await _svc(request).list_objects(kind, filters(request)))

        @routes.get(f"/{kind}/{{id}}")
        async def inspect(request: web.Request) -> web.Response:
            return web.json_response(await _svc(request).inspect_object(kind, request.match_info["id"]))

        @routes.delete(f"/{kind}/{{id}}")
        async def remove(request: web.Request) -> web.Response:
            await _svc(request).remove_object(kind, request.match_info["id"])
            return web.Response(status=204)

        @routes.post(f"/{kind}/{{id}}/update")
        async def update(request: web.Request) -> web.Response:
            await _svc(request).inspect_object(kind, request.match_info["id"])
            raise errdefs.Unsupported(f"updating {kind} is not supported: only their labels could change")

    _make(_kind)
