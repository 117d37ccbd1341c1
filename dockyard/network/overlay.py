"""The overlay driver's kernel side: one VXLAN segment per network, spanning the nodes.

Owns, per overlay network on this node, a network namespace of its own (the *sandbox*,
bind-mounted at `<exec-root>/netns/ov-<id12>` so it outlives a killed daemon, as the
containers do) holding:

    br0       a bridge, addressed with the network's gateway (never routed: forwarding
              stays off in the sandbox, so the address only answers ARP and ping)
    vxlan0    the VXLAN device (VNI of the network, UDP 4789, `nolearning`, `proxy`, no
              group: no multicast, no flooding), enslaved to br0; it is created in the
              daemon's namespace, so its UDP socket sits on the underlay, then moved in
    veth…     the sandbox ends of the containers' veth pairs, enslaved to br0

This is Docker's layout (its `ov-<vni>` sandbox). The alternative, a bridge in the
daemon's own namespace, would let a container ARP for the node's underlay address and
reach the node (Linux answers ARP for any local address on any interface): keeping the
segment in its own namespace means nothing of the node is on it at all.

Forwarding entries come from the peer table, not from learning: for every endpoint on
another node, an FDB entry (its MAC behind that node's VTEP) and a neighbour entry (its
IP at its MAC, so `proxy` answers ARP locally). `plan_peers` is the pure planner,
`program_peers` the thin apply step. The peer table travels through a `PeerSource`
(`network/overlay_store.py`); this module never talks to it.

What this module must not do: decide addresses, VNIs or which peers exist (the service
does), or touch anything outside the sandboxes and the daemon's own `vx-` devices in
transit. Everything here is blocking netlink; callers run it in worker threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import ndmsg

from dockyard import errdefs
from dockyard._sys.mount import Mount, mount, unmount
from dockyard._sys.netns import run_in_netns
from dockyard.network import bridge, driver
from dockyard.network.driver import NetworkSpec

log = logging.getLogger(__name__)

VXLAN_PORT = 4789
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IP 20 + UDP 8 + VXLAN 8
OPT_VNI = "com.docker.network.driver.overlay.vxlanid_list"  # Docker's option name, shown in inspect
BRIDGE = "br0"
VXLAN = "vxlan0"
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


# ---- the peer table and its planner (pure) ----------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """One endpoint of an overlay network, as every node sees it in the peer table."""

    network_id: str
    endpoint_id: str
    ip: str  # the container's address on the overlay
    mac: str
    vtep: str  # underlay address of the node the endpoint lives on
    names: tuple[str, ...] = field(default=(), compare=False)  # DNS names (container name, aliases)


@dataclass(frozen=True, order=True)
class PeerStep:
    """One forwarding entry to add or delete on the network's VXLAN device.

    kind "fdb": `bridge fdb add <mac> dev vxlan0 dst <addr> self permanent`
    kind "neigh": `ip neigh add <addr> lladdr <mac> dev vxlan0 nud permanent`"""

    op: str  # "del" sorts before "add": a moved endpoint's old entry goes first
    kind: str  # "fdb" | "neigh"
    mac: str
    addr: str  # the VTEP for fdb, the container's IP for neigh

    def __str__(self) -> str:
        if self.kind == "fdb":
            return f"fdb {self.op} {self.mac} dst {self.addr}"
        return f"neigh {self.op} {self.addr} lladdr {self.mac}"


def _entries(local_vtep: str, peers: Iterable[Peer]) -> set[tuple[str, str, str]]:
    out: set[tuple[str, str, str]] = set()
    for p in peers:
        if p.vtep == local_vtep:
            continue  # local endpoints are on br0; the bridge learns them
        if p.vtep:  # entries read back from the kernel may have only one half
            out.add(("fdb", p.mac.lower(), p.vtep))
        if p.ip:
            out.add(("neigh", p.mac.lower(), p.ip))
    return out


def plan_peers(local_vtep: str, peers: Iterable[Peer], current: Iterable[Peer] = ()) -> list[PeerStep]:
    """The steps that turn the entries of `current` into those of `peers` (pure).

    Endpoints on `local_vtep` get no entry. Deletions come first (an endpoint that moved to
    another node, or an address reused by another MAC, must not leave a stale entry that
    the kernel would refuse to replace), then additions, each group sorted."""
    want, have = _entries(local_vtep, peers), _entries(local_vtep, current)
    dels = sorted(PeerStep("del", k, mac, addr) for k, mac, addr in have - want)
    adds = sorted(PeerStep("add", k, mac, addr) for k, mac, addr in want - have)
    return dels + adds


def vxlan_mtu(underlay_mtu: int) -> int:
    return underlay_mtu - VXLAN_OVERHEAD


# ---- sandboxes: one network namespace per overlay network --------------------------------------


def _unshare_and_pin(path: Path, errors: list[BaseException]) -> None:
    try:
        if _libc.unshare(_CLONE_NEWNET) != 0:  # only this thread moves; it ends right after
            raise OSError(ctypes.get_errno(), f"unshare: {os.strerror(ctypes.get_errno())}")
        mount(Mount("bind", f"/proc/self/task/{threading.get_native_id()}/ns/net", ("bind",)), path)
    except BaseException as err:  # noqa: BLE001 - handed to the thread that waits for this one
        errors.append(err)


def ensure_sandbox(path: Path) -> bool:
    """A network namespace is bind-mounted at `path`; True when this call made it."""
    if path.is_file() and _is_nsfs(path):
        return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)
    errors: list[BaseException] = []
    t = threading.Thread(target=_unshare_and_pin, args=(path, errors), name="overlay-netns")
    t.start()
    t.join()
    if errors:
        path.unlink(missing_ok=True)
        raise errors[0]
    return True


def _is_nsfs(path: Path) -> bool:
    try:
        return os.statvfs(path).f_fsid != os.statvfs(path.parent).f_fsid or _mounted(path)
    except OSError:
        return False


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


def remove_sandbox(path: Path) -> None:
    """The namespace at `path` is unpinned: with it go br0, vxlan0 and every veth in it
    (and so the container ends of those pairs). Idempotent."""
    unmount(path, lazy=True)
    path.unlink(missing_ok=True)


# ---- netlink steps inside a sandbox -----------------------------------------------------------


@dataclass(frozen=True)
class SegmentSpec:
    sandbox: Path
    vni: int
    vtep: str  # this node's underlay address: the VXLAN source
    gateway: str
    prefixlen: int
    mtu: int
    tag: str


def _ensure_bridge_inside(spec: SegmentSpec) -> int:
    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")
        if lo:
            ipr.link("set", index=lo[0], state="up")
        if not ipr.link_lookup(ifname=BRIDGE):
            ipr.link("add", ifname=BRIDGE, kind="bridge")
        i = ipr.link_lookup(ifname=BRIDGE)[0]
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=i, family=2)}
        if (spec.gateway, spec.prefixlen) not in have:
            ipr.addr("add", index=i, address=spec.gateway, prefixlen=spec.prefixlen)
        ipr.link("set", index=i, mtu=spec.mtu, state="up")
        return int(i)


def _vxlan_inside() -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=VXLAN))


def _plug_vxlan_inside(transit: str, mtu: int) -> None:
    with IPRoute() as ipr:
        i = ipr.link_lookup(ifname=transit)[0]
        br = ipr.link_lookup(ifname=BRIDGE)[0]
        ipr.link("set", index=i, ifname=VXLAN)
        ipr.link("set", index=i, master=br, mtu=mtu, state="up")


def ensure_segment(spec: SegmentSpec) -> None:
    """The sandbox, its bridge and its VXLAN device exist and are up (idempotent)."""
    ensure_sandbox(spec.sandbox)
    ns = str(spec.sandbox)
    run_in_netns(ns, lambda: _ensure_bridge_inside(spec))
    if run_in_netns(ns, _vxlan_inside):
        return
    # Born in the daemon's namespace (its UDP socket is bound there, on the underlay), then
    # moved into the sandbox. The transit name is unique per VNI among this daemon's devices.
    transit = f"vx-{spec.vni:x}"
    with IPRoute() as ipr:
        bridge.delete_owned(transit, "vxlan", spec.tag)  # a half-done earlier attempt
        try:
            ipr.link("add", ifname=transit, kind="vxlan", vxlan_id=spec.vni, vxlan_local=spec.vtep,
                     vxlan_port=VXLAN_PORT, vxlan_learning=0, vxlan_proxy=1, mtu=spec.mtu)  # fmt: skip
        except NetlinkError as err:
            if err.code == errno.EEXIST:
                raise errdefs.Conflict(f"vxlan device {transit} (vni {spec.vni}) already exists on this node") from err
            raise
        i = ipr.link_lookup(ifname=transit)[0]
        try:
            ipr.link("set", index=i, ifalias=spec.tag)
            with open(spec.sandbox, "rb") as nsf:
                ipr.link("set", index=i, net_ns_fd=nsf.fileno())
        except BaseException:
            bridge.delete_link(transit)
            raise
    run_in_netns(ns, lambda: _plug_vxlan_inside(transit, spec.mtu))


def _add_port_inside(ep: driver.EndpointSpec, ctr_tmp: str, tag: str) -> None:
    with IPRoute() as ipr:
        br = ipr.link_lookup(ifname=BRIDGE)
        if not br:
            raise OSError(errno.ENODEV, "overlay sandbox has no bridge")
        with open(ep.netns, "rb") as nsf:
            ipr.link("add", ifname=ep.host_if, kind="veth", peer={"ifname": ctr_tmp, "net_ns_fd": nsf.fileno()},
                     master=br[0], mtu=ep.mtu, state="up")  # fmt: skip
        ipr.link("set", index=ipr.link_lookup(ifname=ep.host_if)[0], ifalias=tag)


def _del_link_inside(name: str) -> None:
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if idx:
            try:
                ipr.link("del", index=idx[0])
            except NetlinkError as err:
                if err.code != errno.ENODEV:
                    raise


def _veths_inside() -> list[str]:
    return [ln.name for ln in bridge.links() if ln.kind == "veth"]


def _read_entries_inside() -> list[Peer]:
    """The permanent FDB and neighbour entries on vxlan0, as peers (one per MAC)."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=VXLAN)
        if not idx:
            return []
        vteps: dict[str, str] = {}
        for e in ipr.fdb("dump", ifindex=idx[0]):
            mac, dst = e.get_attr("NDA_LLADDR"), e.get_attr("NDA_DST")
            if mac and dst and e["ifindex"] == idx[0] and mac != "00:00:00:00:00:00":
                vteps[str(mac).lower()] = str(dst)
        ips: dict[str, str] = {}
        for e in ipr.get_neighbours(family=2, ifindex=idx[0]):
            mac, dst = e.get_attr("NDA_LLADDR"), e.get_attr("NDA_DST")
            if mac and dst and e["state"] & ndmsg.states["permanent"]:
                ips[str(mac).lower()] = str(dst)
    # an fdb entry without a neighbour (or the reverse) still yields its own step
    peers = [Peer("", "", ips.get(mac, ""), mac, vtep) for mac, vtep in vteps.items()]
    peers += [Peer("", "", ip, mac, "") for mac, ip in ips.items() if mac not in vteps]
    return peers


def _apply_inside(steps: list[PeerStep]) -> None:
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=VXLAN)
        if not idx:
            raise OSError(errno.ENODEV, "overlay sandbox has no vxlan device")
        i = idx[0]
        for s in steps:
            try:
                if s.kind == "fdb":
                    ipr.fdb("append" if s.op == "add" else "del", ifindex=i, lladdr=s.mac, dst=s.addr)
                else:
                    ipr.neigh("replace" if s.op == "add" else "del", dst=s.addr, lladdr=s.mac, ifindex=i,
                              state=ndmsg.states["permanent"])  # fmt: skip
            except NetlinkError as err:
                # already there / already gone: the table converges either way
                if err.code not in (errno.EEXIST, errno.ENOENT, errno.ENODEV):
                    raise


class OverlayDriver:
    """Docker's "overlay" driver on this node (see the module docstring)."""

    name = "overlay"

    def __init__(self, tag: str, exec_root: Path, vtep: str) -> None:
        self.tag = tag
        self.root = Path(exec_root) / "netns"
        self.vtep = vtep
        # one sandbox change at a time: two tasks joining a new network together both made
        # its segment ("vxlan device ... already exists", EEXIST) and the peer programming
        # raced them (seen with swarm services starting tasks in parallel)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<OverlayDriver {self.tag} vtep={self.vtep}>"

    def sandbox(self, network_id: str) -> Path:
        return self.root / f"ov-{network_id[:12]}"

    def _segment(self, net: NetworkSpec) -> SegmentSpec:
        try:
            vni = int(str(net.options.get(OPT_VNI) or "").split(",")[0])
        except ValueError:
            raise errdefs.InvalidArgument(f"overlay network {net.id[:12]} has no vxlan id") from None
        return SegmentSpec(self.sandbox(net.id), vni, self.vtep, net.gateway, net.prefixlen, net.mtu, self.tag)

    def create_network(self, net: NetworkSpec) -> None:
        with self._lock:
            ensure_segment(self._segment(net))

    def delete_network(self, net: NetworkSpec) -> None:
        with self._lock:
            remove_sandbox(self.sandbox(net.id))

    def join(self, net: NetworkSpec, ep: driver.EndpointSpec) -> str:
        with self._lock:
            return self._join_locked(net, ep)

    def _join_locked(self, net: NetworkSpec, ep: driver.EndpointSpec) -> str:
        ensure_segment(self._segment(net))  # a network known here only since another node made it
        ns = str(self.sandbox(net.id))
        tmp = "vp" + ep.host_if[4:]
        run_in_netns(ns, lambda: _add_port_inside(ep, tmp, self.tag))
        port = bridge.BridgePort(netns=ep.netns, bridge=BRIDGE, host_if=ep.host_if, address=ep.address,
                                 prefixlen=ep.prefixlen, mac=ep.mac, gateway=ep.gateway, mtu=ep.mtu)  # fmt: skip
        try:
            return run_in_netns(ep.netns, lambda: bridge._configure_inside(port, tmp))
        except BaseException:
            run_in_netns(ns, lambda: _del_link_inside(ep.host_if))
            raise

    def leave(self, net: NetworkSpec, host_if: str) -> None:
        ns = self.sandbox(net.id)
        with self._lock:
            if ns.exists():
                run_in_netns(str(ns), lambda: _del_link_inside(host_if))

    def restore(self, nets: Iterable[NetworkSpec], host_ifs: Iterable[str]) -> list[str]:
        """Sandboxes of `nets` exist again; sandboxes of other networks and veths of gone
        endpoints are removed. Only `ov-*` entries under our own exec root are considered."""
        nets, keep = list(nets), set(host_ifs)
        removed: list[str] = []
        wanted = {self.sandbox(n.id).name for n in nets}
        if self.root.is_dir():
            for p in sorted(self.root.iterdir()):
                if p.name.startswith("ov-") and p.name not in wanted:
                    remove_sandbox(p)
                    removed.append(p.name)
        for net in nets:
            if not self.sandbox(net.id).exists():
                continue  # made again at the next join, when the VNI's peers are known
            try:
                ensure_segment(self._segment(net))
            except (OSError, errdefs.DockyardError) as err:
                log.error("overlay network %s: %s", net.id[:12], err)
                continue
            ns = str(self.sandbox(net.id))
            for name in run_in_netns(ns, _veths_inside):
                if name not in keep:
                    run_in_netns(ns, lambda n=name: _del_link_inside(n))  # type: ignore[misc]
                    removed.append(name)
        return removed

    def program_peers(self, net: NetworkSpec, peers: Iterable[Peer]) -> list[PeerStep]:
        """The VXLAN device's entries match `peers` (endpoints on other nodes); returns the
        steps taken. A network with no sandbox on this node (no local endpoint yet) is left
        alone: its entries are programmed when the first container joins."""
        ns = self.sandbox(net.id)
        with self._lock:
            if not ns.exists():
                return []
            current = run_in_netns(str(ns), _read_entries_inside)
            steps = plan_peers(self.vtep, peers, current)
            if steps:
                run_in_netns(str(ns), lambda: _apply_inside(steps))
            return steps
