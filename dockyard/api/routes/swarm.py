"""Swarm-mode routes of a node that is not part of a swarm: swarm, nodes, services, tasks,
secrets, configs and cluster-volume updates.

Swarm mode is another issue's work. Until it lands, every swarm path answers exactly as a
Docker daemon that has not joined a swarm does (Debian's dockerd, compared by
tests/integration/test_api_conformance.py): 503 with moby's wording, so clients that run
`docker swarm leave --force` in their clean-up, or probe `GET /swarm`, see what they expect.
Nothing here stores or ignores a request: each one is refused before its body is read.
"""

from __future__ import annotations

from aiohttp import web

from dockyard.api.app import Routes
from dockyard.errdefs import Unavailable, Unsupported, not_a_swarm_manager

routes = Routes()

# moby's daemon/cluster errors, word for word: clients match on them
NOT_IN_SWARM = "This node is not part of a swarm"


async def _not_a_manager(request: web.Request) -> web.StreamResponse:
    raise not_a_swarm_manager()


@routes.post("/swarm/leave")
async def swarm_leave(request: web.Request) -> web.StreamResponse:
    raise Unavailable(NOT_IN_SWARM)


@routes.post("/swarm/init")
@routes.post("/swarm/join")
async def swarm_init(request: web.Request) -> web.StreamResponse:
    # dockerd would form or join a cluster here; this daemon has no swarm mode yet
    raise Unsupported("swarm mode is not supported by this daemon")


@routes.put("/volumes/{name}")
async def cluster_volume_update(request: web.Request) -> web.StreamResponse:
    # API 1.42: only cluster volumes can be updated, and they need a swarm
    raise Unavailable("volume update only valid for cluster volumes, but swarm is unavailable")


for _method, _path in (
    ("GET", "/swarm"),
    ("POST", "/swarm/update"),
    ("GET", "/swarm/unlockkey"),
    ("POST", "/swarm/unlock"),
    ("GET", "/nodes"),
    ("GET", "/nodes/{id}"),
    ("DELETE", "/nodes/{id}"),
    ("POST", "/nodes/{id}/update"),
    ("GET", "/services"),
    ("POST", "/services/create"),
    ("GET", "/services/{id}"),
    ("DELETE", "/services/{id}"),
    ("POST", "/services/{id}/update"),
    ("GET", "/services/{id}/logs"),
    ("GET", "/tasks"),
    ("GET", "/tasks/{id}"),
    ("GET", "/tasks/{id}/logs"),
    ("GET", "/secrets"),
    ("POST", "/secrets/create"),
    ("GET", "/secrets/{id}"),
    ("DELETE", "/secrets/{id}"),
    ("POST", "/secrets/{id}/update"),
    ("GET", "/configs"),
    ("POST", "/configs/create"),
    ("GET", "/configs/{id}"),
    ("DELETE", "/configs/{id}"),
    ("POST", "/configs/{id}/update"),
):
    routes.route(_method, _path)(_not_a_manager)
