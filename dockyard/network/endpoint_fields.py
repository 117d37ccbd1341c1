"""Validation of request fields that need no network state: a container's per-endpoint
settings (MAC addresses, link-local IPs, endpoint driver options, links, GwPriority), the
container-wide `Config.MacAddress` that API < 1.44 clients send instead of the endpoint's,
and the network-create fields that need a swarm or a feature this daemon lacks.

Docker's rules (moby's endpoint validation): a MAC is six colon-separated octets; a
link-local IP is an IPv4 address in 169.254.0.0/16 or an IPv6 one in fe80::/10; driver
options are strings. Pure functions; `service.py` applies them.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from dockyard.errdefs import InvalidArgument, Unsupported, not_a_swarm_manager

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def mac(value: Any) -> str:
    if not isinstance(value, str) or not _MAC.match(value):
        raise InvalidArgument(f"invalid MAC address {value}")
    return value.lower()


def link_local(values: Any) -> list[str]:
    if not isinstance(values, list):
        raise InvalidArgument("invalid LinkLocalIPs: expected a list of addresses")
    out = []
    for v in values:
        try:
            addr = ipaddress.ip_address(str(v))
        except ValueError:
            raise InvalidArgument(f"invalid link-local IP address: {v}") from None
        if not addr.is_link_local:
            raise InvalidArgument(f"invalid link-local IP address: {v} is not a link-local address")
        out.append(str(addr))
    return out


def driver_opts(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidArgument("invalid DriverOpts: expected an object")
    return {str(k): str(v) for k, v in value.items()}


def link_pair(spec: str) -> tuple[str, str]:
    """An endpoint link `target:alias` (or `target`) -> (target, alias)."""
    target, _, alias = spec.partition(":")
    target = target.lstrip("/")
    return target, (alias or target).lstrip("/").rsplit("/", 1)[-1]


def links(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) and x.partition(":")[0] for x in value):
        raise InvalidArgument("invalid Links: expected a list of container[:alias]")
    return [str(x) for x in value]


def gw_priority(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"invalid GwPriority {value!r}: expected an integer")
    return value


def apply_container_mac(value: str, primary: dict[str, Any]) -> None:
    """`Config.MacAddress` belongs to the endpoint of the container's main network; one given
    on both must agree (moby's rule since API 1.44)."""
    if not value:
        return
    value = mac(value)
    if primary.get("MacAddress") and primary["MacAddress"] != value:
        raise InvalidArgument(
            "the container-wide MAC address must match the endpoint-specific MAC address for the main network,"
            " or be left empty"
        )
    primary["MacAddress"] = value


def check_network_create(body: dict[str, Any]) -> None:
    """Fields of `POST /networks/create` that are refused rather than stored unused."""
    scope = str(body.get("Scope") or "")
    if body.get("Ingress") or scope == "swarm":
        raise not_a_swarm_manager()  # dockerd hands these to its swarm manager
    if scope not in ("", "local"):
        raise InvalidArgument(f"invalid network scope {scope}: a bridge network is local")
    if body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get("Network"):
        raise Unsupported("config-only networks (ConfigOnly, ConfigFrom) are not supported by this daemon")
    if body.get("EnableIPv4") is False:
        raise Unsupported("IPv6-only networks (EnableIPv4: false) are not supported by this daemon")
