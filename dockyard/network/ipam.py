"""IPv4 address management: pools, subnets and addresses. Pure: no sockets, no netlink.

A network's addresses are a subnet, an optional allocation range (`IPRange`, Docker's
`--fixed-cidr` for the default bridge), a gateway and auxiliary addresses that are never
handed out. Which addresses are in use is the caller's state; this module only decides.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from dockyard.errdefs import Conflict, InvalidArgument

Net = ipaddress.IPv4Network
Addr = ipaddress.IPv4Address


@dataclass(frozen=True)
class Pool:
    """One `default-address-pools` entry: carve `base` into subnets of prefix `size`."""

    base: str
    size: int

    def subnets(self) -> Iterable[Net]:
        base = ipaddress.ip_network(self.base)
        assert isinstance(base, Net)
        if self.size <= base.prefixlen:
            yield base
            return
        yield from base.subnets(new_prefix=self.size)


# Docker's defaults: 172.17.0.0/16 ... 172.31.0.0/16, then 192.168.0.0/16 in /20s
DEFAULT_POOLS = (Pool("172.17.0.0/16", 16), *(Pool(f"172.{n}.0.0/16", 16) for n in range(18, 32)), Pool("192.168.0.0/16", 20))


def pick_subnet(pools: Iterable[Pool], taken: Iterable[Net]) -> Net:
    """The first pool subnet overlapping none of `taken` (host routes, other networks)."""
    taken = list(taken)
    for pool in pools:
        for sub in pool.subnets():
            if not any(sub.overlaps(t) for t in taken):
                return sub
    raise Conflict("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")


def parse_subnet(s: str) -> Net:
    try:
        n = ipaddress.ip_network(s, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {s}") from None
    if not isinstance(n, Net):
        raise InvalidArgument(f"invalid subnet {s}: only IPv4 is supported")
    return n


def parse_addr(s: str) -> Addr:
    try:
        a = ipaddress.ip_address(s.split("/")[0])
    except ValueError:
        raise InvalidArgument(f"invalid IP address {s}") from None
    if not isinstance(a, Addr):
        raise InvalidArgument(f"invalid IP address {s}: only IPv4 is supported")
    return a


@dataclass(frozen=True)
class Subnet:
    """One IPAM config of a network, validated."""

    subnet: Net
    gateway: Addr
    ip_range: Net | None = None
    aux: tuple[Addr, ...] = field(default=())

    @classmethod
    def from_config(cls, cfg: dict[str, object]) -> Subnet:
        if not cfg.get("Subnet"):
            raise InvalidArgument("invalid pool request: a gateway, ip-range or auxiliary address needs a subnet")
        sub = parse_subnet(str(cfg["Subnet"]))
        rng = parse_subnet(str(cfg["IPRange"])) if cfg.get("IPRange") else None
        if rng is not None and not rng.subnet_of(sub):
            raise InvalidArgument(f"invalid pool request: ip-range {rng} is not in subnet {sub}")
        gw = parse_addr(str(cfg["Gateway"])) if cfg.get("Gateway") else next(sub.hosts())
        if gw not in sub:
            raise InvalidArgument(f"invalid pool request: gateway {gw} is not in subnet {sub}")
        aux = []
        for name, a in dict(cfg.get("AuxiliaryAddresses") or cfg.get("AuxAddresses") or {}).items():  # type: ignore[call-overload]
            addr = parse_addr(str(a))
            if addr not in sub:
                raise InvalidArgument(f"invalid auxiliary address {name}: {addr} is not in subnet {sub}")
            aux.append(addr)
        return cls(sub, gw, rng, tuple(aux))

    def reserved(self) -> set[Addr]:
        return {self.subnet.network_address, self.subnet.broadcast_address, self.gateway, *self.aux}

    def check_static(self, addr: Addr, used: Iterable[Addr]) -> None:
        if addr not in self.subnet:
            raise InvalidArgument(f"invalid address {addr}: it does not belong to any of this network's subnets")
        if addr in self.reserved() or addr in set(used):
            raise Conflict(f"Address already in use: {addr}")

    def allocate(self, used: Iterable[Addr]) -> Addr:
        """The lowest free address of the range (or subnet), like libnetwork's bitmap."""
        busy = self.reserved() | set(used)
        for a in (self.ip_range or self.subnet).hosts():
            if a not in busy:
                return a
        raise Conflict(f"no available IPv4 addresses on this network's address pools: {self.subnet}")


def mac_for(addr: Addr) -> str:
    """Docker's MAC: 02:42 followed by the four bytes of the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in addr.packed)


def parse_proc_routes(text: str) -> list[Net]:
    """Destinations of /proc/net/route (little-endian hex), default routes left out."""
    out: list[Net] = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 8:
            continue
        dest = int.from_bytes(bytes.fromhex(parts[1]), "little")
        mask = int.from_bytes(bytes.fromhex(parts[7]), "little")
        if mask == 0:
            continue
        prefix = mask.bit_count()
        out.append(ipaddress.IPv4Network((dest, prefix), strict=False))
    return out
