"""Our own API as an OpenAPI 3.0 document, built from the route declarations.

Every route the daemon serves declares its query parameters and body (`app.Routes`), and
each JSON body kind has one schema in `api/bodies.py`, the same schema `schemas.json_body`
checks requests against. This module only renders those declarations: the document can
never list a route the daemon lacks, or miss one it serves. Served at `GET /openapi.json`
(no Docker route has that name); the fuzz test drives the daemon from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from dockyard.api import versions
from dockyard.api.app import RouteSpec

_QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer", "format": "int64"},
    "json": {"type": "string", "format": "json", "description": "a JSON document"},
    "list": {"type": "array", "items": {"type": "string"}},
}
_PATH_PARAM = re.compile(r"\{([A-Za-z_]+)(?::[^}]*)?\}")


def openapi_path(path: str) -> str:
    """aiohttp's `/images/{name:.+}/json` is OpenAPI's `/images/{name}/json`."""
    return _PATH_PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def _operation(spec: RouteSpec) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(spec.path)
    ]
    for name, kind in spec.query.items():
        p: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": _QUERY_SCHEMAS[kind]}
        if kind == "list":
            p["explode"] = True
        params.append(p)
    op: dict[str, Any] = {
        "operationId": spec.handler.__module__.rpartition(".")[2] + "." + spec.handler.__name__,
        "parameters": params,
        "responses": {"default": {"description": "Docker's response; errors are {\"message\": ...}"}},
    }
    if spec.handler.__doc__:
        op["summary"] = spec.handler.__doc__.strip().splitlines()[0]
    if spec.stream:
        op["x-long-lived"] = True  # a stream or hijack: the response may not end by itself
    if spec.body == "stream":
        op["requestBody"] = {"content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}
    elif spec.body is not None:
        op["requestBody"] = {"content": {"application/json": {"schema": spec.body}}}
    return op


def document(specs: Iterable[RouteSpec]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        paths.setdefault(openapi_path(spec.path), {})[spec.method.lower()] = _operation(spec)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Dockyard Engine API", "version": versions.API_VERSION},
        "paths": dict(sorted(paths.items())),
    }
