"""The bridge driver's kernel side: bridges, veth pairs, addresses and routes over netlink.

Everything here is blocking (netlink round trips); callers run it in a worker thread. No
`ip` command is run: pyroute2 speaks netlink directly. Inside a container's namespace the
work happens on a thread that joined it (`run_in_netns`), so the netlink socket opened
there configures the container's side. Every function is idempotent where it can be, so a
retry or a cleanup after a half-done step is safe.

`BridgeDriver` is the `driver.NetworkDriver` of Docker's "bridge" networks; the service
reaches this module only through it. Bridges and host-side veths carry the daemon's tag as
their interface alias (`ip link show` prints it), so a restart can reconcile after `kill -9`.

The tag is also the ownership record: only a device this module created carries it, and
only a device carrying it (of the expected kind) is ever deleted. A network may name an
existing *bridge* (`com.docker.network.bridge.name`), which is then used but never tagged
nor deleted, as dockerd does; any other existing device (a veth, a dummy, a NIC) is
refused with dockerd's "existing interface … is not a bridge".
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dockyard import errdefs
from dockyard._sys.netns import run_in_netns
from dockyard.network import driver
from dockyard.network.driver import Link, NetworkSpec

log = logging.getLogger(__name__)
logging.getLogger("pyroute2").setLevel(logging.WARNING)  # it logs every netlink message at debug


IFA_F_NODAD = 0x02  # linux/if_addr.h


@dataclass(frozen=True)
class BridgeSpec:
    name: str
    gateway: str  # address of the bridge
    prefixlen: int
    mtu: int = 1500
    route_localnet: bool = True  # so DNAT of 127.0.0.1 to a container is routable
    tag: str = ""  # interface alias marking the bridge as this daemon's
    gateway6: str = ""  # EnableIPv6: the bridge's IPv6 address
    prefixlen6: int = 0


@dataclass(frozen=True)
class BridgePort:
    """The driver's EndpointSpec plus what the bridge needs: the host veth `host_if` plugged
    into `bridge` (tagged as this daemon's), `eth<n>` inside netns `netns`."""

    netns: str  # /proc/<pid>/ns/net
    bridge: str
    host_if: str
    address: str
    prefixlen: int
    mac: str
    gateway: str | None  # None: no default route through this interface (internal, or not primary)
    mtu: int = 1500
    tag: str = ""
    link_local: tuple[str, ...] = ()
    address6: str = ""
    prefixlen6: int = 0
    gateway6: str | None = None


class NotABridge(errdefs.InvalidArgument):
    """A network names an existing device that is not a bridge."""


def _kind_and_alias(link: object) -> tuple[str, str]:
    info = link.get_attr("IFLA_LINKINFO")  # type: ignore[attr-defined]
    kind = str(info.get_attr("IFLA_INFO_KIND") or "") if info is not None else ""
    return kind, str(link.get_attr("IFLA_IFALIAS") or "")  # type: ignore[attr-defined]


def _lookup(ipr: IPRoute, name: str) -> tuple[int, str, str] | None:
    """(index, kind, alias) of the link called name, None when there is none."""
    idx = ipr.link_lookup(ifname=name)
    if not idx:
        return None
    try:
        links = ipr.get_links(idx[0])
    except NetlinkError as err:
        # gone between the two calls: a container's veth dies with its network namespace
        if err.code == errno.ENODEV:
            return None
        raise
    if not links:
        return None
    kind, alias = _kind_and_alias(links[0])
    return idx[0], kind, alias


def _sysctl(path: str, value: str) -> None:
    try:
        Path(path).write_text(value)
    except OSError as err:
        log.warning("sysctl %s=%s: %s", path, value, err)


def enable_forwarding() -> None:
    _sysctl("/proc/sys/net/ipv4/ip_forward", "1")


def link_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def ensure_bridge(spec: BridgeSpec) -> bool:
    """The bridge exists, addressed and up; True when this call created it (and tagged it).
    An existing device is used only if it is a bridge, and is never tagged."""
    with IPRoute() as ipr:
        created = False
        found = _lookup(ipr, spec.name)
        if found is None:
            try:
                ipr.link("add", ifname=spec.name, kind="bridge")
                created = True
            except NetlinkError as err:
                if err.code != errno.EEXIST:  # made by someone else meanwhile: checked below
                    raise
            found = _lookup(ipr, spec.name)
            if found is None:
                raise OSError(errno.ENODEV, f"bridge {spec.name} vanished while it was set up")
        i, kind, _ = found
        if kind != "bridge":
            raise NotABridge(f"existing interface {spec.name} is not a bridge")
        if created and spec.tag:
            # tag first: a daemon killed before the next steps still finds it as its own
            ipr.link("set", index=i, ifalias=spec.tag)
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=i, family=2)}
        if (spec.gateway, spec.prefixlen) not in have:
            ipr.addr("add", index=i, address=spec.gateway, prefixlen=spec.prefixlen)
        if spec.gateway6:
            have6 = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=i, family=10)}
            if (spec.gateway6, spec.prefixlen6) not in have6:
                # no duplicate address detection: the address is ours and usable at once
                ipr.addr("add", index=i, address=spec.gateway6, prefixlen=spec.prefixlen6, flags=IFA_F_NODAD)
        ipr.link("set", index=i, mtu=spec.mtu, state="up")
    if spec.route_localnet:
        _sysctl(f"/proc/sys/net/ipv4/conf/{spec.name}/route_localnet", "1")
    return created


def reattach(bridge_name: str, host_ifs: Iterable[str]) -> None:
    """Plug the existing host ends among host_ifs into the bridge (a deleted bridge frees
    its ports; the veths stay)."""
    with IPRoute() as ipr:
        br = ipr.link_lookup(ifname=bridge_name)
        if not br:
            raise OSError(errno.ENODEV, f"bridge {bridge_name} does not exist")
        for name in host_ifs:
            idx = ipr.link_lookup(ifname=name)
            if idx:
                ipr.link("set", index=idx[0], master=br[0], state="up")


def delete_owned(name: str, kind: str, tag: str) -> bool:
    """Delete the link called name only if it is of `kind` and carries our tag, i.e. this
    daemon made it; True when it was deleted. Anything else is left untouched."""
    with IPRoute() as ipr:
        found = _lookup(ipr, name)
        if found is None:
            return False
        idx, have_kind, alias = found
        if have_kind != kind or not tag or alias != tag:
            log.info("leaving %s %s in place: not made by this daemon", have_kind or "device", name)
            return False
        try:
            ipr.link("del", index=idx)
        except NetlinkError as err:
            if err.code != errno.ENODEV:
                raise
        return True


def delete_link(name: str) -> None:
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if idx:
            try:
                ipr.link("del", index=idx[0])
            except NetlinkError as err:
                if err.code != errno.ENODEV:
                    raise


def _configure_inside(ep: BridgePort, tmp_name: str) -> str:
    with IPRoute() as ipr:
        names = {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        n = 0
        while f"eth{n}" in names:
            n += 1
        ctr_if = f"eth{n}"
        i = ipr.link_lookup(ifname=tmp_name)[0]
        ipr.link("set", index=i, ifname=ctr_if, address=ep.mac, mtu=ep.mtu)
        ipr.addr("add", index=i, address=ep.address, prefixlen=ep.prefixlen)
        for ll in ep.link_local:  # link-local addresses: their whole link-local range is on-link
            ipr.addr("add", index=i, address=ll, prefixlen=64 if ":" in ll else 16)
        ipr.link("set", index=i, state="up")
        lo = ipr.link_lookup(ifname="lo")
        if lo:
            ipr.link("set", index=lo[0], state="up")
        if ep.gateway:
            ipr.route("replace", dst="0.0.0.0/0", gateway=ep.gateway, oif=i)
        if ep.address6:
            ipr.addr("add", index=i, address=ep.address6, prefixlen=ep.prefixlen6, flags=IFA_F_NODAD)
            if ep.gateway6:
                ipr.route("replace", dst="::/0", gateway=ep.gateway6, oif=i, family=10)
        return ctr_if


def add_endpoint(ep: BridgePort) -> str:
    """Creates the veth pair, plugs the host end into the bridge and configures the other end
    inside the container. Returns the interface name inside (eth0, eth1, ...). On failure the
    pair is deleted again (deleting one end deletes both)."""
    tmp = "vp" + ep.host_if[4:]
    with IPRoute() as ipr:
        br = ipr.link_lookup(ifname=ep.bridge)
        if not br:
            raise OSError(errno.ENODEV, f"bridge {ep.bridge} does not exist")
        # The peer is born inside the container's namespace: moving it there afterwards
        # costs the kernel ~13 ms (an unregister/register round with RCU waits), this ~1 ms.
        with open(ep.netns, "rb") as nsf:
            ipr.link("add", ifname=ep.host_if, kind="veth", peer={"ifname": tmp, "net_ns_fd": nsf.fileno()},
                     master=br[0], mtu=ep.mtu, state="up")  # fmt: skip
        try:
            if ep.tag:
                ipr.link("set", index=ipr.link_lookup(ifname=ep.host_if)[0], ifalias=ep.tag)
            return run_in_netns(ep.netns, lambda: _configure_inside(ep, tmp))
        except BaseException:
            try:
                ipr.link("del", index=ipr.link_lookup(ifname=ep.host_if)[0])
            except (NetlinkError, IndexError):
                pass
            raise


def default_route_in(netns: str) -> str | None:
    """The gateway of the default route inside a namespace (tests and reconcile use it)."""

    def read() -> str | None:
        with IPRoute() as ipr:
            for r in ipr.get_routes(family=2):
                if r["dst_len"] == 0:
                    return str(r.get_attr("RTA_GATEWAY"))
        return None

    return run_in_netns(netns, read)


def set_default_route_in(netns: str, gateway: str | None, ifname: str | None) -> None:
    def apply() -> None:
        with IPRoute() as ipr:
            for r in ipr.get_routes(family=2):
                if r["dst_len"] == 0:
                    try:
                        ipr.route("del", dst="0.0.0.0/0")
                    except NetlinkError:
                        pass
                    break
            if gateway and ifname:
                idx = ipr.link_lookup(ifname=ifname)
                if idx:
                    ipr.route("replace", dst="0.0.0.0/0", gateway=gateway, oif=idx[0])

    run_in_netns(netns, apply)


def veth_names() -> list[str]:
    with IPRoute() as ipr:
        return [
            str(link.get_attr("IFLA_IFNAME"))
            for link in ipr.get_links()
            if (link.get_attr("IFLA_LINKINFO") or None) is not None
            and link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND") == "veth"
        ]


def links() -> list[Link]:
    """Every interface of the daemon's namespace with its kind, alias and master."""
    with IPRoute() as ipr:
        all_links = list(ipr.get_links())
        by_index = {ln["index"]: str(ln.get_attr("IFLA_IFNAME")) for ln in all_links}
        out = []
        for ln in all_links:
            info = ln.get_attr("IFLA_LINKINFO")
            kind = str(info.get_attr("IFLA_INFO_KIND") or "") if info is not None else ""
            master = ln.get_attr("IFLA_MASTER")
            out.append(Link(str(ln.get_attr("IFLA_IFNAME")), kind, str(ln.get_attr("IFLA_IFALIAS") or ""),
                            by_index.get(master, "") if master else ""))  # fmt: skip
        return out


class BridgeDriver:
    """Docker's "bridge" driver: one Linux bridge per network, one veth pair per endpoint."""

    name = "bridge"

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __repr__(self) -> str:
        return f"<BridgeDriver {self.tag}>"

    def _spec(self, net: NetworkSpec) -> BridgeSpec:
        return BridgeSpec(net.device, net.gateway, net.prefixlen, net.mtu, tag=self.tag, gateway6=net.gateway6,
                          prefixlen6=net.prefixlen6)  # fmt: skip

    def create_network(self, net: NetworkSpec) -> None:
        ensure_bridge(self._spec(net))

    def delete_network(self, net: NetworkSpec) -> None:
        delete_owned(net.device, "bridge", self.tag)  # a bridge we were given stays

    def join(self, net: NetworkSpec, ep: driver.EndpointSpec) -> str:
        return add_endpoint(BridgePort(
            netns=ep.netns, bridge=net.device, host_if=ep.host_if, address=ep.address, prefixlen=ep.prefixlen,
            mac=ep.mac, gateway=ep.gateway, mtu=ep.mtu, tag=self.tag, link_local=ep.link_local,
            address6=ep.address6, prefixlen6=ep.prefixlen6, gateway6=ep.gateway6,
        ))  # fmt: skip

    def leave(self, net: NetworkSpec, host_if: str) -> None:
        delete_owned(host_if, "veth", self.tag)

    def repair(self, net: NetworkSpec, host_ifs: Iterable[str]) -> bool:
        """The network's bridge again when something outside the daemon deleted it (an admin's
        `ip link del`): re-created and addressed, and the host ends of the endpoints that
        survived plugged back in. True when it had to be re-created."""
        if link_exists(net.device):
            return False
        ensure_bridge(self._spec(net))
        reattach(net.device, host_ifs)
        return True

    def restore(self, nets: Iterable[NetworkSpec], host_ifs: Iterable[str]) -> list[str]:
        nets = list(nets)
        for net in nets:
            try:
                ensure_bridge(self._spec(net))
            except NotABridge as err:  # replaced while we were down: that network stays broken
                log.error("network %s: %s", net.id[:12], err)
        stale = driver.plan_restore(links(), self.tag, [n.device for n in nets], host_ifs)
        for name in stale:
            delete_link(name)
        return stale
