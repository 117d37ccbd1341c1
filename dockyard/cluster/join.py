"""The join endpoint managers serve on `<addr>:2377`, and its client.

Owns the node-to-manager protocol (HTTPS + JSON, not the Docker API):

- `GET /ca`: the cluster CA certificate. Fetched without verification by a joiner, which
  then compares its sha256 with the digest its token pins: a manager of another cluster,
  or a man in the middle, is refused before the token is sent.
- `POST /join` (verified against that CA): the token, a CSR and the node's description;
  answers the node ID, its certificate, the store endpoints and, for a manager, its etcd
  member slot and the CA key.
- `POST /promote` (mutual TLS: the node's own certificate names it): a worker whose record
  now says manager gets its member slot and the CA key.

A wrong or rotated token is refused with Docker's message.
"""

from __future__ import annotations

import json
import logging
import ssl
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from dockyard import errdefs
from dockyard.cluster import ca
from dockyard.cluster.tasklogs import LogQuery, local_frames
from dockyard.cluster.tokens import Token


class JoinBackend(Protocol):
    """What the endpoint needs of this node's membership (SwarmService)."""

    files: ca.NodeFiles

    @property
    def node_id(self) -> str: ...

    async def accept_join(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def accept_promotion(self, node_id: str) -> dict[str, Any]: ...

    async def local_task(self, task_id: str) -> tuple[dict[str, Any], str] | None: ...


# the error classes a joiner can cause, as HTTP statuses (this endpoint is not the Docker API)
_STATUS: dict[type[errdefs.DockyardError], int] = {
    errdefs.InvalidArgument: 400, errdefs.PermissionDenied: 403, errdefs.NotFound: 404,
    errdefs.Conflict: 409, errdefs.AlreadyExists: 409, errdefs.Unavailable: 503,
}  # fmt: skip


def _status_for(err: errdefs.DockyardError) -> int:
    return next((code for cls, code in _STATUS.items() if isinstance(err, cls)), 500)


log = logging.getLogger(__name__)

SWARM_KEY: web.AppKey[Any] = web.AppKey("swarm")
TIMEOUT = aiohttp.ClientTimeout(total=30)


def _error(status: int, msg: str) -> web.Response:
    return web.json_response({"message": msg}, status=status)


async def _ca(request: web.Request) -> web.Response:
    swarm: JoinBackend = request.app[SWARM_KEY]
    return web.Response(body=swarm.files.ca_cert.read_bytes(), content_type="application/x-pem-file")


async def _join(request: web.Request) -> web.Response:
    swarm: JoinBackend = request.app[SWARM_KEY]
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise errdefs.InvalidArgument("invalid join request")
        return web.json_response(await swarm.accept_join(body))
    except errdefs.DockyardError as err:
        return _error(_status_for(err), str(err))
    except ValueError:
        return _error(400, "invalid join request")


async def _promote(request: web.Request) -> web.Response:
    swarm: JoinBackend = request.app[SWARM_KEY]
    node_id = ca.peer_node_id(request.transport.get_extra_info("peercert") if request.transport else None)
    if not node_id:
        return _error(403, "a node certificate of this cluster is required")
    try:
        return web.json_response(await swarm.accept_promotion(node_id))
    except errdefs.DockyardError as err:
        return _error(_status_for(err), str(err))


async def _logs(request: web.Request) -> web.StreamResponse:
    """A local task's log for another node of the cluster (mutual TLS)."""
    swarm: JoinBackend = request.app[SWARM_KEY]
    if not ca.peer_node_id(request.transport.get_extra_info("peercert") if request.transport else None):
        return _error(403, "a node certificate of this cluster is required")
    tid = request.match_info["task"]
    found = await swarm.local_task(tid)
    if found is None:
        return _error(404, f"task {tid} has no container on this node")
    task, path = found
    resp = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.multiplexed-stream"})
    await resp.prepare(request)
    async for chunk in local_frames(task, swarm.node_id, path, LogQuery.from_params(request.query)):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


def join_app(swarm: JoinBackend, manager: bool = True) -> web.Application:
    """The node endpoint: every node serves its tasks' logs; managers also take joins."""
    app = web.Application(client_max_size=1 << 20)
    app[SWARM_KEY] = swarm
    app.router.add_get("/logs/{task}", _logs)
    if manager:
        app.router.add_get("/ca", _ca)
        app.router.add_post("/join", _join)
        app.router.add_post("/promote", _promote)
    return app


def _url(remote: str, path: str) -> str:
    host, _, port = remote.rpartition(":")
    if not host or not port.isdigit():
        host, port = remote, "2377"
    return f"https://{host}:{port}{path}"


async def _fetch_ca(remote: str) -> bytes:
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE  # only to read the CA: its digest is checked against the token
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.get(_url(remote, "/ca"), ssl=insecure) as resp,
    ):
        if resp.status != 200:
            raise errdefs.Unavailable(f"manager {remote} did not give its CA (status {resp.status})")
        return await resp.read()


async def request_join(
    remotes: list[str], token: Token, body: dict[str, Any], files: ca.NodeFiles
) -> dict[str, Any]:
    errors = []
    for remote in remotes:
        try:
            ca_pem = await _fetch_ca(remote)
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            errors.append(f"{remote}: {err}")
            continue
        got = ca.digest(ca_pem)
        if got != token.ca_digest:
            raise errdefs.InvalidArgument(
                f"remote CA does not match fingerprint. Expected: {token.ca_digest}, got: {got}"
            )
        files.ca_cert.write_bytes(ca_pem)
        ctx = ssl.create_default_context(cafile=str(files.ca_cert))
        ctx.check_hostname = False  # managers are reached by address; the pinned CA is the check
        try:
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT) as http,
                http.post(_url(remote, "/join"), data=json.dumps(body), ssl=ctx) as resp,
            ):
                answer = await resp.json(content_type=None)
                if resp.status != 200:
                    msg = answer.get("message") if isinstance(answer, dict) else str(answer)
                    if resp.status == 400:
                        raise errdefs.InvalidArgument(f"rpc error: code = InvalidArgument desc = {msg}")
                    raise errdefs.Unavailable(f"manager {remote} refused the join: {msg}")
                return dict(answer)
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            errors.append(f"{remote}: {err}")
    raise errdefs.Unavailable("could not reach any manager to join: " + "; ".join(errors))


async def request_promotion(files: ca.NodeFiles, own_addr: str, remotes: list[str]) -> dict[str, Any]:
    ctx = ca.client_context(files)
    errors = []
    for remote in remotes:
        if remote.startswith(own_addr + ":"):
            continue
        try:
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT) as http,
                http.post(_url(remote, "/promote"), data="{}", ssl=ctx) as resp,
            ):
                answer = await resp.json(content_type=None)
                if resp.status == 200:
                    return dict(answer)
                errors.append(f"{remote}: {answer}")
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            errors.append(f"{remote}: {err}")
    raise errdefs.Unavailable("no manager granted the promotion: " + "; ".join(errors))
