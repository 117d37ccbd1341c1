"""IPv6 address management for networks created with `EnableIPv6`. Pure: no netlink.

A network's IPv6 side is one subnet (given in `IPAM.Config`, or a unique-local /64 made from
the network's id when none is given, as Docker 27 allocates one), a gateway (the subnet's
first address unless given) and the addresses in use, which are the caller's state.
Addresses are handed out from the subnet's first host upwards, like the IPv4 allocator.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from dockyard.errdefs import Conflict, InvalidArgument

Net6 = ipaddress.IPv6Network
Addr6 = ipaddress.IPv6Address


def is_v6_config(cfg: dict[str, object]) -> bool:
    return ":" in str(cfg.get("Subnet") or "")


def parse_subnet6(s: str) -> Net6:
    try:
        n = ipaddress.ip_network(s, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {s}") from None
    if not isinstance(n, Net6):
        raise InvalidArgument(f"invalid IPv6 subnet {s}")
    if n.prefixlen > 126:
        raise InvalidArgument(f"invalid IPv6 subnet {s}: the prefix is too long for any container")
    return n


def parse_addr6(s: str) -> Addr6:
    try:
        a = ipaddress.ip_address(s.split("/")[0])
    except ValueError:
        raise InvalidArgument(f"invalid IPv6 address {s}") from None
    if not isinstance(a, Addr6):
        raise InvalidArgument(f"invalid IPv6 address {s}")
    return a


def ula_for(network_id: str) -> Net6:
    """A unique-local /64 (fd00::/8) that only this network uses: 56 bits of its id's hash."""
    h = hashlib.sha256(network_id.encode()).digest()[:7]
    return Net6((int.from_bytes(b"\xfd" + h, "big") << 64, 64))


@dataclass(frozen=True)
class Subnet6:
    subnet: Net6
    gateway: Addr6

    @classmethod
    def from_config(cls, cfg: dict[str, object]) -> Subnet6:
        sub = parse_subnet6(str(cfg["Subnet"]))
        gw = parse_addr6(str(cfg["Gateway"])) if cfg.get("Gateway") else sub.network_address + 1
        if gw not in sub:
            raise InvalidArgument(f"invalid pool request: gateway {gw} is not in subnet {sub}")
        return cls(sub, gw)

    def config(self) -> dict[str, str]:
        return {"Subnet": str(self.subnet), "Gateway": str(self.gateway)}

    def check_static(self, addr: Addr6, used: Iterable[Addr6]) -> None:
        if addr not in self.subnet:
            raise InvalidArgument(
                f"invalid address {addr}: it does not belong to any of this network's subnets"
            )
        if addr in (self.subnet.network_address, self.gateway) or addr in set(used):
            raise Conflict(f"Address already in use: {addr}")

    def allocate(self, used: Iterable[Addr6]) -> Addr6:
        busy = {self.subnet.network_address, self.gateway, *used}
        a = self.subnet.network_address + 1
        while a in self.subnet:
            if a not in busy:
                return a
            a += 1
        raise Conflict(f"no available IPv6 addresses on this network's address pools: {self.subnet}")
