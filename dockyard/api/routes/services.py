"""Service, task, secret and config routes (swarm mode; a manager answers them).

Docker quirks kept here: `POST /services/create` answers 201 `{"ID", "Warnings"}`;
`POST /services/{id}/update` needs `?version=` and takes `rollback=previous`; service
logs are multiplexed frames whose lines carry the task's swarm labels as "details".
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from dockyard import errdefs
from dockyard.api import keys
from dockyard.api.app import Routes
from dockyard.api.schemas import filters, json_body, qbool, qint
from dockyard.api.streams import STDERR, STDOUT, frame, long_lived
from dockyard.containers.logs import read_log

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
    async def local_task_logs(self, ref: str, task: bool) -> list[tuple[dict[str, Any], str, str]]: ...


def _svc(request: web.Request) -> ClusterBackend:
    svc: ClusterBackend = request.app[keys.CLUSTER]
    return svc


@routes.post("/services/create")
async def create_service(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).create_service(await json_body(request)), status=201)


@routes.get("/services")
async def list_services(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).list_services(filters(request), qbool(request, "status")))


@routes.get("/services/{id}")
async def inspect_service(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).inspect_service(request.match_info["id"], qbool(request, "status")))


@routes.delete("/services/{id}")
async def remove_service(request: web.Request) -> web.Response:
    await _svc(request).remove_service(request.match_info["id"])
    return web.Response(status=200)


@routes.post("/services/{id}/update")
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
    found = await _svc(request).local_task_logs(request.match_info["id"], task)
    details, timestamps = qbool(request, "details"), qbool(request, "timestamps")
    tail_s = request.query.get("tail", "all")
    tail = None if tail_s in ("all", "") else int(tail_s) if tail_s.lstrip("-").isdigit() else None
    resp = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.multiplexed-stream"})
    await resp.prepare(request)
    with contextlib.suppress(ConnectionResetError), long_lived():
        for t, log_path, node in found:
            prefix = (f"com.docker.swarm.node.id={node},com.docker.swarm.service.id={t['ServiceID']},"
                      f"com.docker.swarm.task.id={t['ID']} ").encode() if details else b""  # fmt: skip
            async for batch in read_log(Path(log_path), tail=tail):
                out = bytearray()
                for e in batch:
                    if (e.stream == STDOUT and not want_out) or (e.stream == STDERR and not want_err):
                        continue
                    ts = e.timestamp.replace(b"+00:00", b"Z") + b" " if timestamps else b""
                    out += frame(e.stream, ts + prefix + e.data)
                if out:
                    await resp.write(bytes(out))
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
        @routes.post(f"/{kind}/create")
        async def create(request: web.Request) -> web.Response:
            return web.json_response(await _svc(request).create_object(kind, await json_body(request)), status=201)

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
