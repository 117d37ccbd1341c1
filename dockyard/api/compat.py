"""Version-gated request rewriting: what a request made at an older API version means today.

dockerd gates behaviour on the version in the request path (`/v1.NN/...`); a request without
a prefix is at the daemon's own version. Each rule here names the version that introduced the
behaviour and rewrites the request body of an older client into today's form, so the
services below `api/` never see a version (STYLE: HTTP is an adapter).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.api import versions
from dockyard.errdefs import InvalidArgument


def request_version(request: web.Request) -> tuple[int, int]:
    return versions.parse(request.match_info.get("api_version") or versions.API_VERSION)


def container_create(body: dict[str, Any], version: tuple[int, int]) -> dict[str, Any]:
    """`POST /containers/create` of a client at `version`."""
    hc = body.get("HostConfig")
    hcheck = body.get("Healthcheck")
    if version < (1, 44) and isinstance(hcheck, dict):
        hcheck.pop("StartInterval", None)  # came with 1.44
    if version < (1, 48):
        # EndpointSettings.GwPriority came with 1.48: an older client's endpoints are all equal
        for epc in ((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}).values():
            if isinstance(epc, dict):
                epc.pop("GwPriority", None)
    epcs = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if version < (1, 44) and isinstance(epcs, dict) and len(epcs) > 1:
        # one network at create before 1.44 (moby's words)
        raise InvalidArgument(f"Container cannot be connected to network endpoints: {', '.join(epcs)}")
    if version < (1, 45) and isinstance(hc, dict):
        # VolumeOptions.Subpath came with 1.45: an older client cannot have meant it
        for m in hc.get("Mounts") or []:
            if isinstance(m, dict) and isinstance(m.get("VolumeOptions"), dict):
                m["VolumeOptions"].pop("Subpath", None)
    return body


def legacy_image_filter(version: tuple[int, int]) -> bool:
    """`GET /images/json?filter=<reference>`: removed in 1.41, ignored from then on."""
    return version < (1, 41)
