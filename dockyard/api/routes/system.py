"""System routes: /_ping, /version, /info, /events, /system/df."""

from __future__ import annotations

import asyncio
import platform
import time
from typing import Any

from aiohttp import web

from dockyard.api import keys, openapi, versions
from dockyard.api.app import ROUTE_SPECS, Routes
from dockyard.api.schemas import check_filter_keys, filters
from dockyard.api.streams import cancel_on_disconnect, mark_long_lived
from dockyard.errdefs import InvalidArgument
from dockyard.events import Subscription
from dockyard.timefmt import parse_time_param

routes = Routes()

_PING_HEADERS = {
    "Api-Version": versions.API_VERSION,
    "Builder-Version": "1",
    "Docker-Experimental": str(versions.EXPERIMENTAL).lower(),
    "Swarm": "inactive",
    "Ostype": "linux",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}


def _ping_headers(request: web.Request) -> dict[str, str]:
    swarm = request.app.get(keys.SWARM)
    return {**_PING_HEADERS, "Swarm": swarm.ping_state()} if swarm is not None else _PING_HEADERS


@routes.get("/_ping")
async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK", headers=_ping_headers(request))


@routes.head("/_ping")
async def ping_head(request: web.Request) -> web.Response:
    return web.Response(headers={**_ping_headers(request), "Content-Length": "0"})


@routes.get("/version")
async def version(request: web.Request) -> web.Response:
    uname = platform.uname()
    comp = {
        "Name": "Engine",
        "Version": versions.ENGINE_VERSION,
        "Details": {
            "ApiVersion": versions.API_VERSION,
            "MinAPIVersion": versions.MIN_API_VERSION,
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": uname.release,
            "GitCommit": "dockyard",
            "GoVersion": f"python{platform.python_version()}",
            "Experimental": str(versions.EXPERIMENTAL).lower(),
            "BuildTime": "",
        },
    }
    return web.json_response(
        {
            "Platform": {"Name": "Dockyard Engine"},
            "Components": [comp],
            "Version": versions.ENGINE_VERSION,
            "ApiVersion": versions.API_VERSION,
            "MinAPIVersion": versions.MIN_API_VERSION,
            "GitCommit": "dockyard",
            "GoVersion": f"python{platform.python_version()}",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": uname.release,
            "BuildTime": "",
            "Experimental": versions.EXPERIMENTAL,
        }
    )


@routes.get("/info")
async def info(request: web.Request) -> web.Response:
    out = await request.app[keys.SYSTEM].info()
    swarm = request.app.get(keys.SWARM)
    if swarm is not None:
        out["Swarm"] = await swarm.info_section_fresh()
    return web.json_response(out)


@routes.get("/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    """This daemon's own API: every route with its parameters and body schemas."""
    return web.json_response(openapi.document({id(s): s for s in request.app[ROUTE_SPECS].values()}.values()))


@routes.get("/system/df")
async def system_df(request: web.Request) -> web.Response:
    return web.json_response(await request.app[keys.SYSTEM].disk_usage())


def _parse_time(value: str | None, name: str) -> float | None:
    """Docker accepts Unix seconds (with fraction), RFC 3339, or a duration like 10m."""
    if not value:
        return None
    try:
        return parse_time_param(value)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {value!r}") from None


def _strip_tag(ref: str) -> str:
    name, _, tag = ref.rpartition(":")
    return name if name and "/" not in tag else ref


def _image_matches(wanted: str, ev: dict[str, Any]) -> bool:
    """Docker matches the image id, the image attribute, and that attribute without its tag."""
    attrs = ev["Actor"]["Attributes"]
    image = attrs.get("image") or (attrs.get("name") if ev["Type"] == "image" else "") or ""
    return wanted in (ev["Actor"]["ID"], image, _strip_tag(image))


def _event_matches(ev: dict[str, Any], f: dict[str, list[str]]) -> bool:
    attrs = ev["Actor"]["Attributes"]
    for key, wanted in f.items():
        if key == "type" and ev["Type"] not in wanted:
            return False
        if key == "event" and ev["Action"] not in wanted and ev["Action"].split(":")[0] not in wanted:
            return False
        if key == "container" and (
            ev["Type"] != "container"
            or not any(ev["Actor"]["ID"].startswith(w) or attrs.get("name") == w for w in wanted)
        ):
            return False
        if key == "image" and not any(_image_matches(w, ev) for w in wanted):
            return False
        # moby's fuzzy match: the actor's ID or name starts with a wanted value, whatever the type
        if key in ("network", "volume", "daemon") and not any(
            ev["Actor"]["ID"].startswith(w) or attrs.get("name", "").startswith(w) for w in wanted
        ):
            return False
        if key == "scope" and ev.get("scope") not in wanted:
            return False
        if key == "label" and not all(
            (attrs.get(w.split("=", 1)[0]) == w.split("=", 1)[1]) if "=" in w else w in attrs for w in wanted
        ):
            return False
    return True


@routes.get("/events", query="since until filters:json", stream=True)
async def events(request: web.Request) -> web.StreamResponse:
    bus = request.app[keys.EVENTS]
    since = _parse_time(request.query.get("since"), "since")
    until = _parse_time(request.query.get("until"), "until")
    f = filters(request)
    check_filter_keys(f, {"type", "event", "container", "image", "label", "daemon", "network", "volume", "scope"})
    # A client that stops reading blocks our writes; once its queue overflows the bus drops
    # it and we abort the connection, which ends a write stuck on the full socket.
    sub = bus.subscribe(on_drop=lambda: request.transport.abort() if request.transport else None)
    mark_long_lived()  # shutdown ends the stream at once
    try:
        async with cancel_on_disconnect(request):  # a narrow filter may never write again
            return await _stream_events(request, sub, since, until, f)
    finally:
        bus.unsubscribe(sub)


async def _stream_events(
    request: web.Request, sub: Subscription, since: float | None, until: float | None, f: dict[str, list[str]]
) -> web.StreamResponse:
    bus = request.app[keys.EVENTS]
    try:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        if since is not None:
            for ev, line in bus.history():
                in_range = ev["timeNano"] / 1e9 >= since and (until is None or ev["timeNano"] / 1e9 <= until)
                if in_range and _event_matches(ev, f):
                    await resp.write(line)
        while True:
            timeout = None if until is None else until - time.time()
            if timeout is not None and timeout <= 0:
                break
            try:
                async with asyncio.timeout(timeout):
                    item = await sub.get()
            except TimeoutError:
                break
            if item is None:  # dropped: too far behind
                return resp
            ev, line = item
            if since is not None and ev["timeNano"] / 1e9 < since:
                continue
            if _event_matches(ev, f):
                await resp.write(line)
        await resp.write_eof()
        return resp
    except (ConnectionResetError, ConnectionAbortedError):  # the client stopped listening, or was dropped
        return resp
