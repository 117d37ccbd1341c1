"""Network drivers behind one interface: what `NetworkService` asks of the kernel side.

The service owns every decision (addresses, names, which endpoints exist, rules); a driver
only makes the host match one network's description. The bridge driver (`bridge.py`) is
the one implementation today; an overlay driver (a VXLAN device per network, its state in
etcd) plugs in by implementing the same five steps, without touching the callers.

A typical flow, all calls blocking (the service runs them in worker threads)::

    create_network(net)          the network's device exists, addressed and up (idempotent)
    join(net, ep) -> "eth0"      a container's interface: created, moved into its netns,
                                 addressed, default route if asked; undone on failure
    leave(net, host_if)          that interface is gone (idempotent)
    delete_network(net)          the device is gone (idempotent)
    restore(nets, host_ifs)      daemon start, maybe after `kill -9`: the devices of `nets`
                                 exist again, and every device or interface tagged as this
                                 daemon's but not in `nets`/`host_ifs` is removed; returns
                                 the names removed

Devices and host interfaces carry the daemon's tag (the interface alias), so a restarted
daemon, or a test's teardown, finds what a killed daemon left, without guessing names that
another engine (a real dockerd's `br-<id>`) could also use. The tag is the ownership
record: a driver deletes only links carrying it. A device a network was given (an
existing bridge named by an option) is used, never tagged, never deleted, and neither is
anything plugged into it that is not tagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class NetworkSpec:
    """One network as a driver sees it."""

    id: str
    device: str  # the device on this host (a bridge; a VXLAN device for an overlay)
    gateway: str  # the host's address on the network
    prefixlen: int
    mtu: int = 1500
    options: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    gateway6: str = ""  # EnableIPv6: the host's IPv6 address on the network
    prefixlen6: int = 0


@dataclass(frozen=True)
class EndpointSpec:
    """One container interface: host side `host_if`, `eth<n>` inside netns `netns`."""

    netns: str  # /proc/<pid>/ns/net
    host_if: str
    address: str
    prefixlen: int
    mac: str
    gateway: str | None  # None: no default route through this interface (internal, or not primary)
    mtu: int = 1500
    link_local: tuple[str, ...] = ()  # IPAMConfig.LinkLocalIPs: extra addresses on the interface
    address6: str = ""  # EnableIPv6 networks: the endpoint's IPv6 address, and its default route
    prefixlen6: int = 0
    gateway6: str | None = None


class NetworkDriver(Protocol):
    """The kernel side of one kind of network (see the module docstring for the flow)."""

    name: str  # Docker's driver name: "bridge", later "overlay"

    def create_network(self, net: NetworkSpec) -> None: ...

    def delete_network(self, net: NetworkSpec) -> None: ...

    def join(self, net: NetworkSpec, ep: EndpointSpec) -> str: ...

    def leave(self, net: NetworkSpec, host_if: str) -> None: ...

    def restore(self, nets: Iterable[NetworkSpec], host_ifs: Iterable[str]) -> list[str]: ...


@dataclass(frozen=True)
class Link:
    """What `plan_restore` needs to know of one host interface."""

    name: str
    kind: str  # "bridge", "veth", ...
    alias: str  # the tag; "" when untagged
    master: str = ""  # the bridge it is plugged into, if any


def plan_restore(links: Iterable[Link], tag: str, devices: Iterable[str], host_ifs: Iterable[str],
                 device_kind: str = "bridge") -> list[str]:  # fmt: skip
    """Links to delete after a restart (pure): ours by tag (devices of `device_kind`, veths),
    or veths plugged into a device tagged as ours, and wanted by no network or endpoint.
    A device we were given (untagged) protects what is plugged into it. Interfaces come
    before devices."""
    devices, host_ifs = set(devices), set(host_ifs)
    links = list(links)
    own_devs = {ln.name for ln in links if ln.alias == tag and ln.kind == device_kind}
    stale_devs = [ln.name for ln in links if ln.name in own_devs and ln.name not in devices]
    stale_ifs = [
        ln.name
        for ln in links
        if ln.kind == "veth"
        and ln.name not in host_ifs
        and (ln.alias == tag or (ln.master and ln.master in own_devs))
    ]
    return stale_ifs + stale_devs
