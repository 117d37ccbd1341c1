"""Golden output of IPAM (network/ipam.py): subnet picking from the pools, allocation order,
static addresses, Docker's MACs, route parsing, and the errors for bad configs."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from dockyard import errdefs
from dockyard.network.ipam import (
    DEFAULT_POOLS,
    Pool,
    Subnet,
    mac_for,
    parse_addr,
    parse_proc_routes,
    parse_subnet,
    pick_subnet,
)
from tests.unit._golden import check_json

Net = ipaddress.IPv4Network


def _outcome(fn: Callable[[], Any]) -> Any:
    """The value as text, or the error's class and message: both are golden."""
    try:
        return str(fn())
    except errdefs.DockyardError as err:
        return {"error": type(err).__name__, "message": str(err)}


# /proc/net/route of a host with a default route, the docker0 subnet and a /24 on eth0
PROC_ROUTE = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    "eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    "short line\n"
)


def test_pools_and_subnet_picking() -> None:
    routes = parse_proc_routes(PROC_ROUTE)
    taken = [*routes, Net("172.18.0.0/16"), Net("172.19.5.0/24")]
    everything = [Net(f"172.{n}.0.0/16") for n in range(16, 32)] + [Net("192.168.0.0/16")]
    check_json("ipam_pools.json", {
        "default_pools": [f"{p.base} in /{p.size}s" for p in DEFAULT_POOLS],
        "first_subnets_of_192.168": [str(s) for s in list(Pool("192.168.0.0/16", 20).subnets())[:3]],
        "pool_smaller_prefix_than_base": [str(s) for s in Pool("10.0.0.0/8", 8).subnets()],
        "routes": [str(r) for r in routes],
        "pick_with_nothing_taken": _outcome(lambda: pick_subnet(DEFAULT_POOLS, [])),
        "pick_around_routes_and_networks": _outcome(lambda: pick_subnet(DEFAULT_POOLS, taken)),
        "pick_in_192.168": _outcome(lambda: pick_subnet(DEFAULT_POOLS, [*everything[:-1], Net("192.168.0.0/19")])),
        "pick_when_all_taken": _outcome(lambda: pick_subnet(DEFAULT_POOLS, everything)),
    })  # fmt: skip


def test_configs_and_allocation() -> None:
    full = Subnet.from_config({
        "Subnet": "10.20.0.0/24", "IPRange": "10.20.0.128/29", "Gateway": "10.20.0.254",
        "AuxiliaryAddresses": {"printer": "10.20.0.129"},
    })  # fmt: skip
    used: list[ipaddress.IPv4Address] = []
    order = []
    for _ in range(5):  # the /29 range has six hosts, one an auxiliary address
        addr = full.allocate(used)
        used.append(addr)
        order.append(str(addr))
    plain = Subnet.from_config({"Subnet": "192.168.7.9/30"})  # strict=False: host bits dropped
    check_json("ipam_allocation.json", {
        "full": {"subnet": str(full.subnet), "gateway": str(full.gateway), "range": str(full.ip_range),
                 "aux": [str(a) for a in full.aux], "reserved": sorted(str(a) for a in full.reserved())},
        "allocation_order": order,
        "exhausted": _outcome(lambda: full.allocate(used)),
        "plain": {"subnet": str(plain.subnet), "gateway": str(plain.gateway),
                  "first": _outcome(lambda: plain.allocate([])),
                  "then": _outcome(lambda: plain.allocate([parse_addr("192.168.7.10")]))},
        "static_ok": _outcome(lambda: full.check_static(parse_addr("10.20.0.7"), used)),
        "static_outside": _outcome(lambda: full.check_static(parse_addr("10.21.0.7"), used)),
        "static_gateway": _outcome(lambda: full.check_static(parse_addr("10.20.0.254"), used)),
        "static_used": _outcome(lambda: full.check_static(parse_addr(order[0]), used)),
        "macs": [mac_for(parse_addr(a)) for a in ("172.17.0.2", "10.20.0.255", "192.168.100.1")],
    })  # fmt: skip


def test_bad_configs() -> None:
    configs: dict[str, dict[str, object]] = {
        "subnet_not_cidr": {"Subnet": "10.0.0.0/33"},
        "subnet_ipv6": {"Subnet": "fd00::/64"},
        "range_outside": {"Subnet": "10.0.0.0/24", "IPRange": "10.0.1.0/28"},
        "gateway_outside": {"Subnet": "10.0.0.0/24", "Gateway": "10.0.1.1"},
        "gateway_not_an_address": {"Subnet": "10.0.0.0/24", "Gateway": "gw"},
        "gateway_ipv6": {"Subnet": "10.0.0.0/24", "Gateway": "fd00::1"},
        "aux_outside": {"Subnet": "10.0.0.0/24", "AuxAddresses": {"a": "10.9.9.9"}},
    }
    out = {name: _outcome(lambda cfg=cfg: Subnet.from_config(cfg)) for name, cfg in configs.items()}
    out["parse_subnet_garbage"] = _outcome(lambda: parse_subnet("nope"))
    check_json("ipam_errors.json", out)
