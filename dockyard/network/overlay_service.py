"""Overlay networks in the network service: what `NetworkService` does differently for a
network whose `Driver` is "overlay", on a daemon given a cluster store.

Owns: creating and removing overlay networks cluster-wide (the document, its name and its
VNI are claimed atomically in the store), mirroring the cluster's overlay networks into this
node's store (so `docker run --network <overlay>` works on every node), publishing this
node's endpoints into the peer table and withdrawing them, and keeping each local sandbox's
forwarding entries equal to the peer table (`OverlayDriver.program_peers`). It also answers
the embedded DNS for names of endpoints on other nodes.

A typical flow::

    ov = OverlayNetworks(svc, cfg)     registers the "overlay" driver with the service
    await ov.start()                   follows the store: mirror, program, republish
    await ov.create(body)              `docker network create -d overlay ...`
    await ov.joined(doc, cid, ep)      after the driver plugged a local container in
    await ov.left(doc, ep)             after it unplugged it
    ov.remote_addresses(nid, name)     DNS: addresses of `name` on other nodes
    await ov.close()

It must not touch the kernel itself (the driver does) nor other drivers' networks.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import socket
import urllib.parse
from typing import TYPE_CHECKING, Any

from dockyard import errdefs
from dockyard.network import ipam
from dockyard.network.overlay import OPT_VNI, OverlayDriver, Peer, vxlan_mtu
from dockyard.network.overlay_store import EtcdPeerSource, PeerSource, Snapshot, free_vni

if TYPE_CHECKING:
    from dockyard.network.service import NetworkService

log = logging.getLogger(__name__)

Record = dict[str, Any]
OVERLAY_POOLS = [ipam.Pool("10.0.0.0/8", 24)]  # swarm's default address pool
TASK_LABEL = "com.docker.swarm.task.id"  # a service's task may join a non-attachable network
OPT_ENCRYPTED = "encrypted"


def underlay_address(store_url: str) -> str:
    """The local address the kernel would use to reach the store: this node's underlay
    address when nothing else is configured. A UDP connect sends nothing."""
    u = urllib.parse.urlsplit(store_url.replace("etcd://", "http://", 1))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((u.hostname or "127.0.0.1", u.port or 2379))
        return str(s.getsockname()[0])


class OverlayNetworks:
    def __init__(self, svc: NetworkService, cfg: Any, source: PeerSource | None = None) -> None:
        self.svc = svc
        self.source: PeerSource = source or EtcdPeerSource(cfg.cluster_store)
        self.vtep = cfg.cluster_advertise or underlay_address(cfg.cluster_store)
        self.driver = OverlayDriver(svc.table, cfg.exec_root, self.vtep)
        svc.drivers["overlay"] = self.driver
        self.snapshot = Snapshot()
        self._first = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._republished = False

    def __repr__(self) -> str:
        return f"<OverlayNetworks vtep={self.vtep} {len(self.snapshot.networks)} networks>"

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="overlay-follow")
        try:
            async with asyncio.timeout(5):
                await self._first.wait()
        except TimeoutError:
            log.warning("cluster store not reachable yet: overlay networks follow when it is")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.source.close()

    async def _follow(self) -> None:
        async for snap in self.source.watch():
            try:
                await self._converge(snap)
            except Exception:  # a task root: log, and the next snapshot tries again
                log.exception("overlay: applying the cluster's peer table failed")
            self._first.set()

    async def _converge(self, snap: Snapshot) -> None:
        self.snapshot = snap
        svc = self.svc
        async with svc._lock:
            for nid, gdoc in snap.networks.items():
                if svc.store.networks.get(nid) is None:
                    svc._save(self._local_copy(gdoc))
            for doc in svc.all():
                if doc["Driver"] == "overlay" and doc["Id"] not in snap.networks and not doc["Dockyard"].get("Endpoints"):
                    svc.store.networks.delete(doc["Id"])  # removed on another node
                    await asyncio.to_thread(self.driver.delete_network, svc._net_spec(doc))
        if not self._republished:
            await self._republish(snap)
            self._republished = True
        for doc in svc.all():
            if doc["Driver"] == "overlay":
                steps = await asyncio.to_thread(self.driver.program_peers, svc._net_spec(doc),
                                                snap.peers.get(doc["Id"], []))  # fmt: skip
                if steps:
                    log.info("overlay %s: %s", doc["Name"], "; ".join(map(str, steps)))

    async def _republish(self, snap: Snapshot) -> None:
        """After a restart: our live endpoints are in the table, our gone ones are not."""
        for doc in self.svc.all():
            if doc["Driver"] != "overlay":
                continue
            eps = doc["Dockyard"].get("Endpoints") or {}
            have = {p.endpoint_id for p in snap.peers.get(doc["Id"], [])}
            for cid, ep in eps.items():
                if ep["EndpointID"] not in have:
                    await self.source.publish(self._peer(doc, ep))
        mine = {ep["EndpointID"] for d in self.svc.all() for ep in (d["Dockyard"].get("Endpoints") or {}).values()}
        for nid, peers in snap.peers.items():
            for p in peers:
                if p.vtep == self.vtep and p.endpoint_id not in mine:
                    await self.source.withdraw(nid, p.endpoint_id, p.ip)

    @staticmethod
    def _local_copy(gdoc: Record) -> Record:
        doc = copy.deepcopy(gdoc)
        doc["Dockyard"] = {"Bridge": "br0", "MTU": int(gdoc.get("MTU") or 1450), "Endpoints": {}}
        doc.pop("MTU", None)
        return doc

    # ---- networks --------------------------------------------------------------------------

    async def create(self, body: Record, name: str, opts: dict[str, str], labels: dict[str, str]) -> Record:
        if opts.get(OPT_ENCRYPTED) is not None:
            # refused rather than stored and ignored: the peer traffic would go in clear
            raise errdefs.InvalidArgument("encrypted overlay networks (-o encrypted) are not supported by this daemon")
        configs = [c for c in ((body.get("IPAM") or {}).get("Config") or []) if ":" not in str(c.get("Subnet", ""))]
        known = list(self.snapshot.networks.values()) + self.svc.all()
        if configs:
            sub = ipam.Subnet.from_config(configs[0])
            cfg = {"Subnet": str(sub.subnet), "Gateway": str(sub.gateway)}
            if sub.ip_range:
                cfg["IPRange"] = str(sub.ip_range)
        else:
            taken = self.svc._taken_subnets() + [ipam.parse_subnet(c["Subnet"]) for d in known
                                                 for c in d["IPAM"].get("Config") or [] if c.get("Subnet")]  # fmt: skip
            net = ipam.pick_subnet(OVERLAY_POOLS, taken)
            cfg = {"Subnet": str(net), "Gateway": str(next(net.hosts()))}
        mtu = int(opts.get("com.docker.network.driver.mtu") or vxlan_mtu(self.svc.cfg.mtu or 1500))
        for attempt in range(8):
            taken_vnis = {int(str((d.get("Options") or {}).get(OPT_VNI) or 0)) for d in known}
            vni = free_vni(taken_vnis)
            doc = self.svc._new_doc(name, "overlay", {**opts, OPT_VNI: str(vni)}, [cfg], labels,
                                    bool(body.get("Internal")), bool(body.get("Attachable")))  # fmt: skip
            doc["Scope"] = "swarm"
            gdoc = {k: v for k, v in doc.items() if k != "Dockyard"}
            gdoc["MTU"] = mtu
            try:
                await self.source.create_network(gdoc, vni)
            except errdefs.Conflict as err:
                if "vxlan id" not in str(err):
                    raise
                known = list((await self._fresh()).networks.values())
                continue
            local = self._local_copy(gdoc)
            self.svc._save(local)
            return local
        raise errdefs.Unavailable("could not allocate a vxlan id: too many concurrent network creations")

    async def _fresh(self) -> Snapshot:
        read = getattr(self.source, "snapshot", None)
        return await read() if read is not None else self.snapshot

    def check_removable(self, doc: Record) -> None:
        if self.snapshot.peers.get(doc["Id"]):
            raise errdefs.Conflict(
                f"error while removing network: network {doc['Name']} id {doc['Id']} has active endpoints"
            )

    async def removed(self, doc: Record) -> None:
        await self.source.remove_network(doc["Id"])

    # ---- endpoints -------------------------------------------------------------------------

    @staticmethod
    def check_attach(rec: Record, doc: Record) -> None:
        labels = (rec.get("Config") or {}).get("Labels") or {}
        if not doc.get("Attachable") and TASK_LABEL not in labels:
            raise errdefs.PermissionDenied(
                f"Could not attach to network {doc['Name']}: rpc error: code = PermissionDenied "
                f"desc = network {doc['Name']} not manually attachable"
            )

    def _peer(self, doc: Record, ep: Record) -> Peer:
        return Peer(doc["Id"], ep["EndpointID"], ep["IPv4Address"].split("/")[0], ep["MacAddress"], self.vtep,
                    tuple(ep.get("DNSNames") or ()))  # fmt: skip

    def used_addresses(self, nid: str) -> list[str]:
        """Addresses endpoints on other nodes hold (the allocator's hint; `claim` decides)."""
        return [p.ip for p in self.snapshot.peers.get(nid, [])]

    async def claim(self, nid: str, ip: str, eid: str) -> bool:
        return await self.source.claim_address(nid, ip, eid)

    async def joined(self, doc: Record, ep: Record) -> None:
        """A local endpoint is plugged in: publish it, and program the sandbox (new, maybe)."""
        await self.source.publish(self._peer(doc, ep))
        await asyncio.to_thread(self.driver.program_peers, self.svc._net_spec(doc),
                                self.snapshot.peers.get(doc["Id"], []))  # fmt: skip

    async def left(self, doc: Record, ep: Record) -> None:
        try:
            await self.source.withdraw(doc["Id"], ep["EndpointID"], ep["IPv4Address"].split("/")[0])
        except errdefs.Unavailable as err:  # withdrawn at the next start (republish)
            log.warning("overlay %s: withdrawing endpoint %s: %s", doc["Name"], ep["EndpointID"][:12], err)

    def remote_addresses(self, nid: str, name: str) -> list[str]:
        return [p.ip for p in self.snapshot.peers.get(nid, [])
                if p.vtep != self.vtep and name in {n.lower() for n in p.names}]  # fmt: skip
