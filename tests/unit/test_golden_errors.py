"""Golden output of the one error map (api/errors.py) and its use by the middleware
(api/app.py): every errdefs class's status, subclasses resolved through their bases,
Docker's `{"message": ...}` body and content type, and the client's inverse
(client/_errors.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dockyard import errdefs
from dockyard.api.app import Routes, create_app
from dockyard.api.errors import STATUS, status_for
from dockyard.client._errors import from_status
from dockyard.network.portmap import PortAllocated
from tests.unit._golden import check_json

CLASSES = {name: getattr(errdefs, name) for name in errdefs.__all__ if isinstance(getattr(errdefs, name), type)}


class ImageNotFound(errdefs.NotFound):
    """A domain subclass, as STYLE asks domain code to write them."""


def test_every_errdefs_class_has_a_status() -> None:
    for name, cls in CLASSES.items():
        assert cls is errdefs.DockyardError or cls in STATUS, f"{name} has no status"
    check_json("errors_status.json", {
        "classes": {name: status_for(cls("x")) for name, cls in sorted(CLASSES.items())},
        "subclasses": {
            "ImageNotFound(NotFound)": status_for(ImageNotFound("x")),
            "PortAllocated(Internal)": status_for(PortAllocated("x")),
        },
        "client_inverse": {
            str(code): type(from_status(code, "m")).__name__ for code in (304, 400, 401, 403, 404, 409, 500, 501, 503, 502)
        },
    })  # fmt: skip


def _app() -> web.Application:
    routes = Routes()

    @routes.get("/raise/{name}")
    async def raise_(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "json":
            json.loads("{nope")
        if name == "aiohttp-404":
            raise web.HTTPNotFound(text="no such thing")
        if name == "bug":
            raise KeyError("surprise")
        raise CLASSES[name](f"cannot frob thing 3f2a: it is {name.lower()}")

    return create_app({}, [routes])


async def _responses(paths: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with TestClient(TestServer(_app())) as client:
        for path in paths:
            r = await client.get(path)
            body = await r.read()
            out[path] = {
                "status": r.status,
                "content_type": r.headers.get("Content-Type"),
                "body": json.loads(body) if body else None,
                "header_names": sorted(
                    h for h in r.headers if h.lower().startswith(("api-", "docker-", "ostype"))
                ),
            }
    return out


def test_error_bodies_through_the_middleware() -> None:
    paths = [f"/raise/{name}" for name in sorted(CLASSES)]
    paths += ["/raise/json", "/raise/aiohttp-404", "/raise/bug", "/v1.47/raise/NotFound",
              "/v9.99/raise/NotFound", "/v1.0/raise/NotFound"]  # fmt: skip
    check_json("errors_http.json", asyncio.run(_responses(paths)))
