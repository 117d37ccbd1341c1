"""Request parsing shared by the route modules: booleans, filters, JSON bodies."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from dockyard.errdefs import InvalidArgument

_TRUE = {"1", "true", "True", "yes"}


def qbool(request: web.Request, name: str, default: bool = False) -> bool:
    v = request.query.get(name)
    if v is None or v == "":
        return default
    return v in _TRUE


def qint(request: web.Request, name: str, default: int | None = None) -> int | None:
    v = request.query.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {v!r} is not an integer") from None


def filters(request: web.Request) -> dict[str, list[str]]:
    """Docker's `filters` JSON: the Go client sends {"k":{"v":true}}, docker-py {"k":["v"]}."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"invalid filter: {err}") from None
    if not isinstance(data, dict):
        raise InvalidArgument("invalid filter: must be a JSON object")
    out: dict[str, list[str]] = {}
    for key, val in data.items():
        if isinstance(val, dict):
            out[key] = [k for k, on in val.items() if on]
        elif isinstance(val, list):
            out[key] = [str(x) for x in val]
        else:
            out[key] = [str(val)]
    return out


def check_filter_keys(f: dict[str, list[str]], allowed: set[str]) -> None:
    for key in f:
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")


async def json_body(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        if required:
            raise InvalidArgument("request body is empty; expected a JSON object")
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"invalid JSON: {err}") from None
    if data is None and not required:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument("invalid JSON: expected an object")
    return data
