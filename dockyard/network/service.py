"""NetworkService: Docker's networks (bridge, host, none, user-defined bridges), container
endpoints on them, published ports, and the embedded DNS, persisted in the store.

A typical flow::

    check_create(rec, body)   container create: the networks exist, --ip fits; fills
                              NetworkSettings.Networks (names, IDs, aliases, IPAM config)
    attach(rec, pid)          container start, after `runtime create` made its netns: one veth
                              per network, addresses, default route, published ports, DNS;
                              fills NetworkSettings; all or nothing
    connect / disconnect      a running container gains or loses an endpoint
    detach(rec)               exit or remove: endpoints, addresses, ports, DNS released

Endpoints live in the network's document (`Dockyard.Endpoints`, keyed by container id), so
address allocation, `Containers` in inspect and the nftables plan all read one place, and a
restarted daemon finds the endpoints of containers that kept running. Kernel work goes
goes through the network's driver (`driver.NetworkDriver`; `bridge.BridgeDriver` for every
network today, netlink in worker threads) and `portmap` (one nft transaction per change). The service must not import container code: connect/disconnect reach container
records through the small `ContainerAccess` protocol the daemon wiring hands in.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import ipaddress
import logging
import os
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dockyard import errdefs
from dockyard._sys.netns import set_loopback_up
from dockyard.filters import labels_match
from dockyard.network import bridge, endpoint_fields, ipam, ipam6
from dockyard.network.dns import Resolver, embedded_resolv_conf, host_nameservers
from dockyard.network.driver import EndpointSpec, NetworkDriver, NetworkSpec
from dockyard.network.heal import Healer, repair_bridge
from dockyard.network.portmap import (
    BridgeRules,
    ForwardBridge,
    PortAllocated,
    PortMap,
    PortReservations,
    apply_table,
    delete_table,
    plan_table,
    sync_forward_accept,
    table_name,
)

if TYPE_CHECKING:
    from dockyard.network.overlay_service import OverlayNetworks

log = logging.getLogger(__name__)

Record = dict[str, Any]
BUILTIN = ("bridge", "host", "none")
OPT_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_DEFAULT = "com.docker.network.bridge.default_bridge"
# Unchanged rules are re-applied after this long anyway: the table may have been flushed
# behind our back, or a real dockerd started beside us with its FORWARD policy DROP.
_RULES_RECHECK_S = 10.0


class NetworkNotFound(errdefs.NotFound):
    pass


class StartFailed(errdefs.Internal):
    pass


class ContainerAccess(Protocol):
    """What connect/disconnect need of the container service."""

    def get(self, ref: str) -> Record: ...

    def lock(self, cid: str) -> asyncio.Lock: ...

    def save(self, rec: Record) -> None: ...


def _now() -> str:
    ns = time.time_ns()
    secs, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{nanos:09d}Z"


def _alive(pid: int) -> bool:
    return pid > 0 and os.path.exists(f"/proc/{pid}/ns/net")


def plan_rules(table: str, networks: list[Record]) -> tuple[str, tuple[ForwardBridge, ...]]:
    """The nft script and the iptables FORWARD accepts for these network records (pure)."""
    bridges, ports, fwd = [], [], []
    for doc in networks:
        if doc["Driver"] != "bridge":
            continue
        opts = doc.get("Options") or {}
        name = doc["Dockyard"]["Bridge"]
        endpoints = (doc["Dockyard"].get("Endpoints") or {}).values()
        bridges.append(BridgeRules(
            name, doc["IPAM"]["Config"][0]["Subnet"], bool(doc.get("Internal")),
            _truthy(opts.get(OPT_MASQ)), _truthy(opts.get(OPT_ICC)),
            tuple(sorted(ep["HostIf"] for ep in endpoints if ep.get("HostIf"))),
        ))  # fmt: skip
        fwd.append(ForwardBridge(name, bool(doc.get("Internal"))))
        for ep in endpoints:
            for pm in ep.get("Ports") or []:
                ports.append(PortMap(**pm))
    return plan_table(table, bridges, ports), tuple(fwd)


def _truthy(v: Any, default: bool = True) -> bool:
    if v is None or v == "":
        return default
    return str(v).lower() in ("1", "true", "yes", "on")


def empty_endpoint_settings() -> dict[str, Any]:
    return {
        "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "NetworkID": "",
        "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None,
    }  # fmt: skip


class NetworkService:
    def __init__(self, store: Any, events: Any, cfg: Any) -> None:
        self.store = store
        self.events = events
        self.cfg = cfg
        self.table = table_name(str(cfg.data_root))
        # drivers by Docker's name; devices and interfaces carry the table name as their tag
        self.drivers: dict[str, NetworkDriver] = {"bridge": bridge.BridgeDriver(self.table)}
        self.containers: ContainerAccess | None = None
        self._lock = asyncio.Lock()  # network docs: allocation, endpoints
        self._rules_lock = asyncio.Lock()
        self._rules_applied: tuple[str, tuple[ForwardBridge, ...]] | None = None  # last applied, and when
        self._rules_applied_at = 0.0
        self._ports = PortReservations()
        self._healer = Healer(self)  # bridges, table and veths deleted behind our back
        self._resolvers: dict[str, Resolver] = {}
        self._upstreams: dict[str, list[str]] = {}
        # overlay networks exist only on a daemon given a cluster store (their state is shared)
        self.overlay: OverlayNetworks | None = None
        if getattr(cfg, "cluster_store", ""):
            from dockyard.network.overlay_service import OverlayNetworks

            self.overlay = OverlayNetworks(self, cfg)

    def __repr__(self) -> str:
        return f"<NetworkService {self.table} {len(self._resolvers)} resolvers>"

    def statistics(self) -> dict[str, int]:
        return {"resolvers": len(self._resolvers), **self._ports.statistics()}

    def bind_containers(self, access: ContainerAccess) -> None:
        self.containers = access

    # ---- lookup --------------------------------------------------------------------------

    def all(self) -> list[Record]:
        return list(self.store.networks.all())

    def resolve(self, ref: str) -> Record:
        if not ref:
            raise NetworkNotFound("network  not found")
        doc = self.store.networks.get(ref) or self.store.networks.get_by_name(ref)
        if doc is not None:
            return doc  # type: ignore[no-any-return]
        ids = self.store.networks.ids_with_prefix(ref) if ref.isalnum() else []
        if len(ids) == 1:
            return self.store.networks.get(ids[0])  # type: ignore[no-any-return]
        if len(ids) > 1:
            raise errdefs.InvalidArgument(f"network {ref} is ambiguous ({len(ids)} matches found based on ID prefix)")
        raise NetworkNotFound(f"network {ref} not found")

    def _save(self, doc: Record) -> None:
        self.store.networks.put(doc["Id"], doc, name=doc["Name"])

    def inspect(self, ref: str) -> Record:
        return self.view(self.resolve(ref), containers=True)

    @staticmethod
    def view(doc: Record, containers: bool = True) -> Record:
        out = {k: copy.deepcopy(v) for k, v in doc.items() if k != "Dockyard"}
        eps = doc.get("Dockyard", {}).get("Endpoints") or {}
        out["Containers"] = (
            {
                cid: {
                    "Name": ep["Name"], "EndpointID": ep["EndpointID"], "MacAddress": ep["MacAddress"],
                    "IPv4Address": ep["IPv4Address"], "IPv6Address": ep.get("IPv6Address") or "",
                }
                for cid, ep in eps.items()
            }
            if containers
            else {}
        )
        return out

    @staticmethod
    def _is_bridge(doc: Record) -> bool:
        return bool(doc["Driver"] == "bridge")

    @staticmethod
    def _has_endpoints(doc: Record) -> bool:
        """Networks whose containers get an interface of their own (not host/none)."""
        return doc["Driver"] in ("bridge", "overlay")

    @staticmethod
    def _user_defined(doc: Record) -> bool:
        return doc["Name"] not in BUILTIN

    def _subnet(self, doc: Record) -> ipam.Subnet:
        return ipam.Subnet.from_config(doc["IPAM"]["Config"][0])

    @staticmethod
    def _subnet6(doc: Record) -> ipam6.Subnet6 | None:
        """The IPv6 side of an `EnableIPv6` network (its IPAM config after the IPv4 one)."""
        if not doc.get("EnableIPv6"):
            return None
        cfg = next((c for c in doc["IPAM"].get("Config") or [] if ipam6.is_v6_config(c)), None)
        return ipam6.Subnet6.from_config(cfg) if cfg else None

    def _driver(self, doc: Record) -> NetworkDriver:
        try:
            return self.drivers[doc["Driver"]]
        except KeyError:
            raise errdefs.NotFound(f'plugin "{doc["Driver"]}" not found') from None

    def _net_spec(self, doc: Record) -> NetworkSpec:
        sub, sub6 = self._subnet(doc), self._subnet6(doc)
        return NetworkSpec(
            doc["Id"], doc["Dockyard"]["Bridge"], str(sub.gateway), sub.subnet.prefixlen,
            int(doc["Dockyard"].get("MTU") or 1500), dict(doc.get("Options") or {}),
            gateway6=str(sub6.gateway) if sub6 else "", prefixlen6=sub6.subnet.prefixlen if sub6 else 0,
        )  # fmt: skip

    def _pools(self) -> list[ipam.Pool]:
        if self.cfg.default_address_pools:
            return [ipam.Pool(str(p["base"]), int(p["size"])) for p in self.cfg.default_address_pools]
        return list(ipam.DEFAULT_POOLS)

    def _taken_subnets(self, exclude_bridges: Iterable[str] = ()) -> list[ipam.Net]:
        """Host routes (other daemons' bridges, the LAN) plus our own networks' subnets."""
        try:
            routes_text = Path("/proc/net/route").read_text()
        except OSError:
            routes_text = ""
        ex = set(exclude_bridges)
        routes = []
        for line in routes_text.splitlines()[1:]:
            if line.split() and line.split()[0] in ex:
                continue
            routes.extend(ipam.parse_proc_routes("hdr\n" + line))
        for doc in self.all():
            for c in doc["IPAM"].get("Config") or []:
                if c.get("Subnet") and not ipam6.is_v6_config(c):
                    routes.append(ipam.parse_subnet(c["Subnet"]))
        return routes

    # ---- daemon lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Builtin networks, devices and rules again; endpoints of live containers kept.

        Reconciles after `kill -9` too: each driver re-creates the devices of the networks
        in the store and removes the devices and interfaces tagged as ours that no network
        or live endpoint wants any more (a network removed, a container gone meanwhile)."""
        await asyncio.to_thread(bridge.enable_forwarding)
        async with self._lock:
            await self._ensure_builtin()
            for doc in self.all():
                if doc["Driver"] not in self.drivers:
                    continue
                eps = doc["Dockyard"].setdefault("Endpoints", {})
                for cid, ep in list(eps.items()):
                    if _alive(int(ep.get("Pid") or 0)):
                        for pm in ep.get("Ports") or []:
                            try:
                                self._ports.reserve(pm["proto"], pm["host_ip"], pm["host_port"])
                            except errdefs.DockyardError as err:
                                log.warning("re-reserving port %s of %s: %s", pm["host_port"], cid[:12], err)
                    else:
                        del eps[cid]
                        await asyncio.to_thread(self._driver(doc).leave, self._net_spec(doc), ep["HostIf"])
                self._save(doc)
            for name, drv in self.drivers.items():
                docs = [d for d in self.all() if d["Driver"] == name]
                keep = [ep["HostIf"] for d in docs for ep in (d["Dockyard"].get("Endpoints") or {}).values()]
                removed = await asyncio.to_thread(drv.restore, [self._net_spec(d) for d in docs], keep)
                if removed:
                    log.info("reconcile: removed %s left by an earlier run", ", ".join(removed))
        if self.overlay is not None:
            await self.overlay.start()
        for cid, netns in self._dns_wanted().items():
            # the container's own `--dns` still decides where other names go after a restart
            await self._open_resolver(cid, netns, self.store.containers.get(cid), rewrite=False)
        await self._apply_rules()
        self._healer.start()

    def _dns_wanted(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for doc in self.all():
            if self._has_endpoints(doc) and self._user_defined(doc):
                for cid, ep in (doc["Dockyard"].get("Endpoints") or {}).items():
                    out[cid] = ep["Netns"]
        return out

    async def forget_overlays(self) -> None:
        """The node left its swarm: drop the local copies of overlay networks (and their
        sandboxes); their endpoints are gone with the tasks."""
        async with self._lock:
            for doc in self.all():
                if doc["Driver"] == "overlay" and not doc["Dockyard"].get("Endpoints"):
                    self.store.networks.delete(doc["Id"])
                    drv = self.drivers.get("overlay")
                    if drv is not None:
                        await asyncio.to_thread(drv.delete_network, self._net_spec(doc))
        self.drivers.pop("overlay", None)

    async def close(self) -> None:
        """Daemon shutdown. With no endpoints left, bridges and the table go too (nothing
        leaks); otherwise everything stays for the containers that keep running."""
        await self._healer.close()
        for cid in list(self._resolvers):
            await self._close_resolver(cid)
        if self.overlay is not None:
            await self.overlay.close()
        self._ports.close()
        docs = self.all()
        if any(doc.get("Dockyard", {}).get("Endpoints") for doc in docs):
            return
        for doc in docs:
            if doc["Driver"] in self.drivers:
                await asyncio.to_thread(self._driver(doc).delete_network, self._net_spec(doc))
        await delete_table(self.table)
        await sync_forward_accept(self.table, [])

    @property
    def bridge_disabled(self) -> bool:
        return bool(self.cfg.bridge_name == "none")

    async def _ensure_builtin(self) -> None:
        existing = {d["Name"]: d for d in self.all()}
        for name, driver in (("host", "host"), ("none", "null")):
            if name not in existing:
                self._save(self._new_doc(name, driver, {}, [], {}, False, False))
        doc = existing.get("bridge")
        want_name = self.cfg.bridge_name
        if self.bridge_disabled:
            # dockerd's `--bridge none`: no default bridge network at all (not a device "none")
            if doc is not None and not doc["Dockyard"].get("Endpoints"):
                await asyncio.to_thread(self._driver(doc).delete_network, self._net_spec(doc))
                self.store.networks.delete(doc["Id"])
            return
        exists = await asyncio.to_thread(bridge.link_exists, want_name)
        cfg_subnet = self._default_bridge_ipam(doc, want_name, exists)
        opts = {
            OPT_DEFAULT: "true", OPT_ICC: "true", OPT_MASQ: "true",
            "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0", OPT_NAME: want_name,
            OPT_MTU: str(self.cfg.mtu),
        }  # fmt: skip
        if doc is None:
            doc = self._new_doc("bridge", "bridge", opts, [cfg_subnet], {}, False, False)
        else:
            if doc["Dockyard"]["Bridge"] != want_name and not doc["Dockyard"].get("Endpoints"):
                await asyncio.to_thread(self._driver(doc).delete_network, self._net_spec(doc))
            doc["Options"] = opts
            doc["IPAM"]["Config"] = [cfg_subnet]
        doc["Dockyard"].update(Bridge=want_name, MTU=self.cfg.mtu)
        self._save(doc)

    def _default_bridge_ipam(self, doc: Record | None, dev: str, exists: bool) -> dict[str, str]:
        keep = doc is not None and (doc["Dockyard"].get("Endpoints") or exists)
        if self.cfg.bip:
            iface = ipaddress.ip_interface(self.cfg.bip)
            cfg = {"Subnet": str(iface.network), "Gateway": str(iface.ip)}
        elif doc is not None and (keep or not self._overlaps_host(doc["IPAM"]["Config"][0]["Subnet"], dev)):
            cfg = {k: v for k, v in doc["IPAM"]["Config"][0].items() if k in ("Subnet", "Gateway")}
        else:
            taken = [n for n in self._taken_subnets([dev]) if not (doc and str(n) == doc["IPAM"]["Config"][0]["Subnet"])]
            sub = ipam.pick_subnet(self._pools(), taken)
            cfg = {"Subnet": str(sub), "Gateway": str(next(sub.hosts()))}
        if self.cfg.fixed_cidr:
            cfg["IPRange"] = str(ipam.parse_subnet(self.cfg.fixed_cidr))
        return cfg

    def _overlaps_host(self, subnet: str, own_dev: str) -> bool:
        try:
            text = Path("/proc/net/route").read_text()
        except OSError:
            return False
        sub = ipam.parse_subnet(subnet)
        for line in text.splitlines()[1:]:
            parts = line.split()
            if not parts or parts[0] == own_dev:
                continue
            if any(sub.overlaps(n) for n in ipam.parse_proc_routes("hdr\n" + line)):
                return True
        return False

    def _new_doc(
        self, name: str, driver: str, options: dict[str, str], ipam_cfg: list[dict[str, str]],
        labels: dict[str, str], internal: bool, attachable: bool,
    ) -> Record:  # fmt: skip
        nid = secrets.token_hex(32)
        return {
            "Name": name, "Id": nid, "Created": _now(), "Scope": "local", "Driver": driver,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None if name in BUILTIN else {}, "Config": ipam_cfg},
            "Internal": internal, "Attachable": attachable, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Options": options, "Labels": labels,
            "Dockyard": {"Bridge": options.get(OPT_NAME) or ("br-" + nid[:12]), "MTU": 1500, "Endpoints": {}},
        }  # fmt: skip

    # ---- rules -----------------------------------------------------------------------------

    async def _apply_rules(self) -> None:
        async with self._rules_lock:
            state = plan_rules(self.table, self.all())
            script, fwd = state
            if state == self._rules_applied and time.monotonic() - self._rules_applied_at < _RULES_RECHECK_S:
                return  # most container starts change nothing here: spare two nft runs
            await apply_table(script)
            await sync_forward_accept(self.table, list(fwd))  # a real dockerd's FORWARD DROP beside us
            self._rules_applied, self._rules_applied_at = state, time.monotonic()

    # ---- networks ----------------------------------------------------------------------------

    async def create(self, body: dict[str, Any]) -> dict[str, str]:
        name = body.get("Name") or ""
        if not name:
            raise errdefs.InvalidArgument("network name is required")
        driver = body.get("Driver") or "bridge"
        if name in BUILTIN or driver in ("host", "null"):
            raise errdefs.PermissionDenied(f"{name} is a pre-defined network and cannot be created")
        if driver not in ("bridge", "overlay"):
            raise errdefs.NotFound(f'plugin "{driver}" not found')
        endpoint_fields.check_network_create(body)
        opts = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
        labels = dict(body.get("Labels") or {})
        if driver == "overlay":
            return await self._create_overlay(body, name, opts, labels)
        # an empty config entry asks for an automatic subnet, as no entry does
        all_configs = [c for c in (body.get("IPAM") or {}).get("Config") or [] if any(c.values())]
        configs = [c for c in all_configs if not ipam6.is_v6_config(c)]
        configs6 = [c for c in all_configs if ipam6.is_v6_config(c)]
        enable6 = bool(body.get("EnableIPv6"))
        if configs6 and not enable6:
            # an IPv6 subnet without EnableIPv6 would be stored and never used
            raise errdefs.InvalidArgument("an IPv6 subnet was given but EnableIPv6 is not set")
        if len(configs6) > 1:
            raise errdefs.InvalidArgument("only one IPv6 subnet per network is supported")
        async with self._lock:
            if self.store.networks.get_by_name(name) is not None:
                raise errdefs.Conflict(f"network with name {name} already exists")
            if configs:
                sub = ipam.Subnet.from_config(configs[0])
                for doc in self.all():
                    for c in doc["IPAM"].get("Config") or []:
                        if c.get("Subnet") and not ipam6.is_v6_config(c) and ipam.parse_subnet(c["Subnet"]).overlaps(sub.subnet):
                            raise errdefs.PermissionDenied(
                                "invalid pool request: Pool overlaps with other one on this address space"
                            )
                cfg = {"Subnet": str(sub.subnet), "Gateway": str(sub.gateway)}
                if sub.ip_range:
                    cfg["IPRange"] = str(sub.ip_range)
                aux = configs[0].get("AuxiliaryAddresses") or configs[0].get("AuxAddresses")
                if aux:
                    cfg["AuxiliaryAddresses"] = aux
            else:
                net = ipam.pick_subnet(self._pools(), self._taken_subnets())
                cfg = {"Subnet": str(net), "Gateway": str(next(net.hosts()))}
            doc = self._new_doc(
                name, "bridge", opts, [cfg], labels, bool(body.get("Internal")), bool(body.get("Attachable"))
            )
            if enable6:
                ula = ipam6.ula_for(doc["Id"])
                sub6 = ipam6.Subnet6.from_config(configs6[0]) if configs6 else ipam6.Subnet6(ula, ula.network_address + 1)
                for other in self.all():
                    o6 = self._subnet6(other)
                    if o6 and o6.subnet.overlaps(sub6.subnet):
                        raise errdefs.PermissionDenied(
                            "invalid pool request: Pool overlaps with other one on this address space"
                        )
                doc["EnableIPv6"] = True
                doc["IPAM"]["Config"].append(sub6.config())
            dev = doc["Dockyard"]["Bridge"]
            if len(dev) > 15:
                raise errdefs.InvalidArgument(f"bridge name {dev} is longer than 15 characters")
            if any(d["Dockyard"].get("Bridge") == dev for d in self.all() if self._is_bridge(d)):
                raise errdefs.Conflict(f"bridge name {dev} is already used by another network")
            mtu = int(opts.get(OPT_MTU) or self.cfg.mtu or 1500)
            doc["Dockyard"]["MTU"] = mtu
            # dockerd keeps what the request said: the docker CLI sends {}, docker-py nothing (null)
            doc["IPAM"]["Options"] = (body.get("IPAM") or {}).get("Options")
            drv = self._driver(doc)
            try:
                await asyncio.to_thread(drv.create_network, self._net_spec(doc))
                self._save(doc)
                await self._apply_rules()
            except BaseException:
                self.store.networks.delete(doc["Id"])
                await asyncio.to_thread(drv.delete_network, self._net_spec(doc))
                raise
        self.events.publish("network", "create", doc["Id"], {"name": name, "type": "bridge"})
        return {"Id": doc["Id"], "Warning": ""}

    async def _create_overlay(self, body: dict[str, Any], name: str, opts: dict[str, str],
                              labels: dict[str, str]) -> dict[str, str]:  # fmt: skip
        if self.overlay is None:  # dockerd's answer outside swarm mode (503)
            raise errdefs.not_a_swarm_manager()
        async with self._lock:
            if self.store.networks.get_by_name(name) is not None:
                raise errdefs.Conflict(f"network with name {name} already exists")
            doc = await self.overlay.create(body, name, opts, labels)
        self.events.publish("network", "create", doc["Id"], {"name": name, "type": "overlay"})
        return {"Id": doc["Id"], "Warning": ""}

    async def remove(self, ref: str) -> None:
        doc = self.resolve(ref)
        if doc["Name"] in BUILTIN:
            raise errdefs.PermissionDenied(f"{doc['Name']} is a pre-defined network and cannot be removed")
        if doc["Driver"] == "overlay" and self.overlay is not None:
            await self._wait_tasks_left(doc)
        async with self._lock:
            doc = self.resolve(doc["Id"])
            if doc["Dockyard"].get("Endpoints"):
                raise errdefs.Conflict(
                    f"error while removing network: network {doc['Name']} id {doc['Id']} has active endpoints"
                )
            if doc["Driver"] == "overlay" and self.overlay is not None:
                self.overlay.check_removable(doc)  # endpoints on other nodes count too
                await self.overlay.removed(doc)
            self.store.networks.delete(doc["Id"])
            await asyncio.to_thread(self._driver(doc).delete_network, self._net_spec(doc))
            await self._apply_rules()
        self.events.publish("network", "destroy", doc["Id"], {"name": doc["Name"], "type": doc["Driver"]})

    async def _wait_tasks_left(self, doc: Record, timeout: float = 20.0) -> None:
        """Swarm mode: `docker stack rm` removes a stack's network right after its services,
        while their tasks are still stopping (swarm accepts that). When every endpoint left
        on the overlay, here or on other nodes, is a service task's (its DNS names carry
        `tasks.<service>`), wait for them to leave; anything else is refused at once below."""
        assert self.overlay is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cur = self.resolve(doc["Id"])
            local = [ep.get("DNSNames") or [] for ep in (cur["Dockyard"].get("Endpoints") or {}).values()]
            remote = [list(p.names) for p in self.overlay.snapshot.peers.get(doc["Id"], [])]
            names = local + remote
            if not names or not all(any(n.startswith("tasks.") for n in ns) for ns in names):
                return
            await asyncio.sleep(0.2)

    def list(self, f: dict[str, list[str]]) -> list[Record]:
        for key in f:
            if key not in ("name", "id", "label", "driver", "type", "dangling", "scope"):
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        out = []
        for doc in self.all():
            if f.get("name") and not any(n in doc["Name"] for n in f["name"]):
                continue
            if f.get("id") and not any(doc["Id"].startswith(i) for i in f["id"]):
                continue
            if f.get("driver") and doc["Driver"] not in f["driver"]:
                continue
            if f.get("scope") and doc["Scope"] not in f["scope"]:
                continue
            if f.get("type"):
                for t in f["type"]:
                    if t not in ("custom", "builtin"):
                        raise errdefs.InvalidArgument(f"invalid filter: 'type'='{t}'")
                kind = "custom" if self._user_defined(doc) else "builtin"
                if kind not in f["type"]:
                    continue
            if f.get("label") and not labels_match(doc.get("Labels") or {}, f["label"]):
                continue
            if f.get("dangling"):
                want = f["dangling"][0].lower() in ("1", "true")
                dangling = self._user_defined(doc) and not self._in_use(doc)
                if dangling != want:
                    continue
            out.append(self.view(doc, containers=False))
        return sorted(out, key=lambda d: d["Name"])

    def _in_use(self, doc: Record) -> bool:
        return bool(doc["Dockyard"].get("Endpoints"))

    async def prune(self, f: dict[str, builtins.list[str]]) -> builtins.list[str]:
        from dockyard.timefmt import parse_rfc3339, parse_time_param

        for key in f:
            if key not in ("until", "label", "label!"):
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        until = parse_time_param(f["until"][0]) if f.get("until") else None
        deleted = []
        for doc in self.all():
            if not self._user_defined(doc) or self._in_use(doc):
                continue
            labels = doc.get("Labels") or {}
            if f.get("label") and not labels_match(labels, f["label"]):
                continue
            if f.get("label!") and labels_match(labels, f["label!"]):
                continue
            if until is not None and parse_rfc3339(doc["Created"]) > until:
                continue
            try:
                await self.remove(doc["Id"])
            except errdefs.DockyardError:
                continue
            deleted.append(doc["Name"])
        self.events.publish("network", "prune", "", {})
        return deleted

    # ---- containers: create ------------------------------------------------------------------

    def check_create(self, rec: Record, body: dict[str, Any]) -> None:
        """Validate the container's networks and record them in NetworkSettings.Networks."""
        hc = rec["HostConfig"]
        mode = hc.get("NetworkMode") or "bridge"
        epcs = dict(((body.get("NetworkingConfig") or {}).get("EndpointsConfig")) or {})
        if "default" in epcs:  # the docker CLI names the default network "default"
            epcs.setdefault("bridge", epcs.pop("default"))
        if mode == "default":
            mode = "bridge"
        nets: dict[str, Any] = {}
        if mode == "bridge" and self.bridge_disabled and "bridge" not in [d["Name"] for d in self.all()]:
            # as dockerd with the default bridge disabled: the container has loopback only
            rec["NetworkSettings"]["Networks"] = {}
            return
        if (mode.startswith("container:") or mode == "host") and body.get("MacAddress"):
            # nothing of its own to put the address on
            raise errdefs.InvalidArgument("conflicting options: mac-address and the network mode")
        if mode.startswith("container:"):
            rec["NetworkSettings"]["Networks"] = {}
            return
        primary = self.resolve(mode)
        if primary["Name"] in ("host", "none") and hc.get("PortBindings"):
            hc["PortBindings"] = {}  # Docker discards published ports with no network of their own
        ordered = [(mode, primary)] + [(k, self.resolve(k)) for k in epcs if k != mode]
        if primary["Name"] in ("host", "none") and len(ordered) > 1:
            raise errdefs.InvalidArgument(
                "conflicting options: cannot attach both user-defined and non-user-defined network-modes"
            )
        for key, doc in ordered:
            nets[doc["Name"]] = self._endpoint_settings(doc, epcs.get(key) or epcs.get(doc["Name"]) or {})
        endpoint_fields.apply_container_mac(body.get("MacAddress") or "", nets[primary["Name"]])
        rec["NetworkSettings"]["Networks"] = nets

    def _endpoint_settings(self, doc: Record, epc: dict[str, Any]) -> dict[str, Any]:
        entry = empty_endpoint_settings()
        entry["NetworkID"] = doc["Id"]
        if epc.get("Aliases"):
            entry["Aliases"] = list(epc["Aliases"])
        ip_cfg = epc.get("IPAMConfig") or {}
        if ip_cfg.get("IPv4Address"):
            if not self._user_defined(doc) or not self._has_endpoints(doc):
                raise errdefs.InvalidArgument("user specified IP address is supported on user defined networks only")
            addr = ipam.parse_addr(ip_cfg["IPv4Address"])
            sub = self._subnet(doc)
            if addr not in sub.subnet:
                raise errdefs.InvalidArgument(
                    f"invalid endpoint settings: no configured subnet contains IP address {addr}"
                )
            entry["IPAMConfig"] = {"IPv4Address": str(addr)}
        if epc.get("MacAddress"):
            entry["MacAddress"] = endpoint_fields.mac(epc["MacAddress"])
        if ip_cfg.get("LinkLocalIPs"):
            entry["IPAMConfig"] = {**(entry["IPAMConfig"] or {}), "LinkLocalIPs": endpoint_fields.link_local(ip_cfg["LinkLocalIPs"])}
        if ip_cfg.get("IPv6Address"):
            sub6 = self._subnet6(doc)
            if sub6 is None:
                raise errdefs.InvalidArgument(
                    f"invalid endpoint settings: network {doc['Name']} has no IPv6 subnet for address {ip_cfg['IPv6Address']}"
                )
            addr6 = ipam6.parse_addr6(ip_cfg["IPv6Address"])
            if addr6 not in sub6.subnet:
                raise errdefs.InvalidArgument(
                    f"invalid endpoint settings: no configured subnet contains IP address {addr6}"
                )
            entry["IPAMConfig"] = {**(entry["IPAMConfig"] or {}), "IPv6Address": str(addr6)}
        if epc.get("DriverOpts"):
            entry["DriverOpts"] = endpoint_fields.driver_opts(epc["DriverOpts"])
        if gw := endpoint_fields.gw_priority(epc.get("GwPriority")):
            entry["GwPriority"] = gw  # moby omits it when 0
        if epc.get("Links"):
            entry["Links"] = endpoint_fields.links(epc["Links"])
        return entry

    # ---- containers: start / exit --------------------------------------------------------------

    def announce(self, action: str, rec: Record) -> None:
        """Publish `connect` or `disconnect` for each network the container is on, as dockerd
        does when a container starts or stops (none and host included; a `container:` mode
        shares another's endpoints and has none)."""
        mode = rec["HostConfig"].get("NetworkMode") or "bridge"
        if mode.startswith("container:"):
            return
        for name, entry in (rec["NetworkSettings"].get("Networks") or {}).items():
            try:
                doc = self.resolve(entry.get("NetworkID") or name)
            except errdefs.DockyardError:
                continue  # removed meanwhile (forced): nothing to tell
            self.events.publish(
                "network", action, doc["Id"], {"container": rec["Id"], "name": doc["Name"], "type": doc["Driver"]}
            )

    async def attach(self, rec: Record, pid: int, netns_path: str | None = None) -> None:
        """Give the created (not yet started) container its endpoints; fill NetworkSettings.
        `netns_path`: a namespace pinned before the container exists (pid 0 until
        `rebind`), for a restore that needs its address in place before its sockets.

        Either every endpoint, port and resolver exists afterwards, or none does."""
        ns = rec["NetworkSettings"]
        mode = rec["HostConfig"].get("NetworkMode") or "bridge"
        if mode == "host" or mode.startswith("container:"):
            return
        netns = netns_path or f"/proc/{pid}/ns/net"
        if netns_path is None:
            await asyncio.to_thread(set_loopback_up, pid)
        if mode == "none":
            ns["SandboxKey"] = netns
            return
        cid = rec["Id"]
        try:
            nets = list(ns["Networks"].items())
            docs = [self.resolve(entry.get("NetworkID") or name) for name, entry in nets]
            # the default route: the external network of highest GwPriority (API 1.48), the first
            # on a tie; an overlay has no way out of its sandbox, so the route stays on a bridge
            outside = [(d, entry) for (_, entry), d in zip(nets, docs, strict=True)
                       if not d.get("Internal") and self._is_bridge(d)]  # fmt: skip
            gw_doc = max(outside, key=lambda de: int(de[1].get("GwPriority") or 0), default=(None, None))[0]
            for (_name, entry), doc in zip(nets, docs, strict=True):
                await self._add_endpoint(rec, doc, netns, entry, default_route=doc is gw_doc)
            if docs:
                await self._publish_ports(rec, docs[0])
            if any(self._user_defined(d) for d in docs):
                await self._open_resolver(cid, netns, rec)
            ns["SandboxKey"] = netns
            ns["SandboxID"] = secrets.token_hex(32)
            self._fill_top_level(rec)
            await self._apply_rules()
        except BaseException as err:
            await self.detach(rec)
            if isinstance(err, errdefs.Conflict):
                # a failed start is Docker's 500 (and `run --rm` then removes the container);
                # a 409 would mean "wrong container state" to the container service
                raise StartFailed(f"failed to set up container networking: {err}") from err
            raise

    async def rebind(self, rec: Record, pid: int) -> None:
        """The container restored into a pinned namespace now runs as `pid`: its endpoints
        follow the process (liveness at reconcile, the resolver after a daemon restart)."""
        netns = f"/proc/{pid}/ns/net"
        async with self._lock:
            for entry in rec["NetworkSettings"]["Networks"].values():
                doc = self.store.networks.get(entry.get("NetworkID") or "")
                ep = (doc or {}).get("Dockyard", {}).get("Endpoints", {}).get(rec["Id"]) if doc else None
                if doc is not None and ep is not None:
                    ep.update(Netns=netns, Pid=pid)
                    self._save(doc)
        rec["NetworkSettings"]["SandboxKey"] = netns

    async def _add_endpoint(self, rec: Record, doc: Record, netns: str, entry: dict[str, Any],
                            default_route: bool) -> None:  # fmt: skip
        cid = rec["Id"]
        if not self._has_endpoints(doc) or doc["Driver"] not in self.drivers:
            raise errdefs.InvalidArgument(f"container cannot be connected to network {doc['Name']}")
        if doc["Driver"] == "overlay" and self.overlay is not None:
            self.overlay.check_attach(rec, doc)
        async with self._lock:
            doc = self.resolve(doc["Id"])
            eps = doc["Dockyard"].setdefault("Endpoints", {})
            if cid in eps:
                raise errdefs.Conflict(f"endpoint with name {rec['Name'].lstrip('/')} already exists in network {doc['Name']}")
            sub = self._subnet(doc)
            used = [ipam.parse_addr(e["IPv4Address"]) for e in eps.values()]
            overlay = self.overlay if doc["Driver"] == "overlay" else None
            if overlay is not None:  # addresses are the cluster's: held elsewhere, and claimed
                used += [ipam.parse_addr(ip) for ip in overlay.used_addresses(doc["Id"])]
            want = (entry.get("IPAMConfig") or {}).get("IPv4Address")
            sub6 = self._subnet6(doc)
            addr6 = None
            if sub6 is not None:
                used6 = [ipam6.parse_addr6(e["IPv6Address"]) for e in eps.values() if e.get("IPv6Address")]
                want6 = (entry.get("IPAMConfig") or {}).get("IPv6Address")
                if want6:
                    addr6 = ipam6.parse_addr6(want6)
                    sub6.check_static(addr6, used6)
                else:
                    addr6 = sub6.allocate(used6)
            eid = secrets.token_hex(32)
            while True:
                if want:
                    addr = ipam.parse_addr(want)
                    sub.check_static(addr, used)
                else:
                    addr = sub.allocate(used)
                if overlay is None or await overlay.claim(doc["Id"], str(addr), eid):
                    break
                if want:
                    raise errdefs.Conflict("Address already in use")
                used.append(addr)  # taken on another node meanwhile: the next one
            mac = entry.get("MacAddress") or ipam.mac_for(addr)
            aliases = list(entry.get("Aliases") or [])
            names = [rec["Name"].lstrip("/"), cid[:12], *aliases]
            ep = {
                "Name": rec["Name"].lstrip("/"), "EndpointID": eid, "MacAddress": mac,
                "IPv4Address": f"{addr}/{sub.subnet.prefixlen}", "Aliases": aliases,
                "DNSNames": names if self._user_defined(doc) else None,
                "HostIf": "veth" + eid[:7], "Netns": netns, "Pid": _pid_of(netns), "Ports": [],
                "IPv6Address": f"{addr6}/{sub6.subnet.prefixlen}" if addr6 and sub6 else "",
                # endpoint links: names only this container resolves, to the target's address
                "LinkAliases": dict(endpoint_fields.link_pair(x)[::-1] for x in entry.get("Links") or []),
            }  # fmt: skip
            eps[cid] = ep
            self._save(doc)
        spec = EndpointSpec(
            netns=netns, host_if=ep["HostIf"], address=str(addr), prefixlen=sub.subnet.prefixlen, mac=mac,
            gateway=str(sub.gateway) if default_route else None, mtu=int(doc["Dockyard"].get("MTU") or 1500),
            link_local=tuple((entry.get("IPAMConfig") or {}).get("LinkLocalIPs") or ()),
            address6=str(addr6) if addr6 else "", prefixlen6=sub6.subnet.prefixlen if sub6 else 0,
            gateway6=str(sub6.gateway) if sub6 and default_route else None,
        )  # fmt: skip
        try:
            await repair_bridge(self, doc)  # an admin's `ip link del`: the next start re-creates it
            await asyncio.to_thread(self._driver(doc).join, self._net_spec(doc), spec)
            if doc["Driver"] == "overlay" and self.overlay is not None:
                await self.overlay.joined(doc, ep)
        except BaseException as err:
            await self._drop_endpoint(doc["Id"], cid)
            if isinstance(err, OSError):
                raise errdefs.Internal(f"failed to create endpoint {ep['Name']} on network {doc['Name']}: {err}") from err
            raise
        entry.update(
            NetworkID=doc["Id"], EndpointID=eid, Gateway=str(sub.gateway), IPAddress=str(addr),
            IPPrefixLen=sub.subnet.prefixlen, MacAddress=mac, DNSNames=ep["DNSNames"],
            GlobalIPv6Address=str(addr6) if addr6 else "", GlobalIPv6PrefixLen=sub6.subnet.prefixlen if sub6 else 0,
            IPv6Gateway=str(sub6.gateway) if sub6 else "",
        )  # fmt: skip

    async def _drop_endpoint(self, nid: str, cid: str) -> dict[str, Any] | None:
        async with self._lock:
            doc = self.store.networks.get(nid)
            if doc is None:
                return None
            ep = doc["Dockyard"].get("Endpoints", {}).pop(cid, None)
            if ep is None:
                return None
            for pm in ep.get("Ports") or []:
                self._ports.release(pm["proto"], pm["host_ip"], pm["host_port"])
            self._save(doc)
        await asyncio.to_thread(self._driver(doc).leave, self._net_spec(doc), ep["HostIf"])
        if doc["Driver"] == "overlay" and self.overlay is not None:
            await self.overlay.left(doc, ep)
        return ep  # type: ignore[no-any-return]

    async def _publish_ports(self, rec: Record, doc: Record) -> None:
        hc, cfg = rec["HostConfig"], rec["Config"]
        bindings: dict[str, list[dict[str, str]]] = {k: list(v or []) for k, v in (hc.get("PortBindings") or {}).items()}
        exposed = dict(cfg.get("ExposedPorts") or {})
        if hc.get("PublishAllPorts"):
            for key in exposed:
                if not bindings.get(key):
                    bindings[key] = [{"HostIp": "", "HostPort": ""}]
        ports_view: dict[str, Any] = {k: None for k in exposed}
        if not bindings:
            rec["NetworkSettings"]["Ports"] = ports_view
            return
        if not self._is_bridge(doc):
            # the host has no route into an overlay's sandbox, so a port would never answer
            raise errdefs.InvalidArgument(
                f"cannot publish ports on overlay network {doc['Name']}: connect the container to a bridge "
                "network first (docker run --network <bridge> ... then docker network connect)"
            )
        cid = rec["Id"]
        maps: list[dict[str, Any]] = []
        async with self._lock:
            ndoc = self.resolve(doc["Id"])
            ep = ndoc["Dockyard"]["Endpoints"][cid]
            ctr_ip = ep["IPv4Address"].split("/")[0]
            try:
                for key, blist in sorted(bindings.items()):
                    port_s, _, proto = key.partition("/")
                    proto = proto or "tcp"
                    view = []
                    for b in blist:
                        host_ip = b.get("HostIp") or ""
                        if ":" in host_ip:
                            continue  # IPv6 host addresses: not published (IPv4 only)
                        hp = self._reserve(proto, host_ip, str(b.get("HostPort") or ""))
                        maps.append({"proto": proto, "host_ip": host_ip, "host_port": hp, "ctr_ip": ctr_ip,
                                     "ctr_port": int(port_s), "bridge": ndoc["Dockyard"]["Bridge"]})  # fmt: skip
                        view.append({"HostIp": host_ip or "0.0.0.0", "HostPort": str(hp)})
                    ports_view[key] = view
            except BaseException as err:
                for pm in maps:
                    self._ports.release(pm["proto"], pm["host_ip"], pm["host_port"])
                if isinstance(err, PortAllocated):
                    raise PortAllocated(
                        f"driver failed programming external connectivity on endpoint {ep['Name']} "
                        f"({ep['EndpointID']}): {err}"
                    ) from None
                raise
            ep["Ports"] = maps
            self._save(ndoc)
        rec["NetworkSettings"]["Ports"] = ports_view

    def _reserve(self, proto: str, host_ip: str, spec: str) -> int:
        if not spec:
            return self._ports.reserve(proto, host_ip, 0)
        lo_s, _, hi_s = spec.partition("-")
        try:
            lo, hi = int(lo_s), int(hi_s or lo_s)
        except ValueError:
            raise errdefs.InvalidArgument(f"invalid host port: {spec}") from None
        last: PortAllocated | None = None
        for p in range(lo, hi + 1):
            try:
                return self._ports.reserve(proto, host_ip, p)
            except PortAllocated as err:
                last = err
        assert last is not None
        raise last

    def _fill_top_level(self, rec: Record) -> None:
        ns = rec["NetworkSettings"]
        b = ns["Networks"].get("bridge")
        top = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": ""}
        if b and b.get("EndpointID"):
            top = {k: b[k] for k in top}
        ns.update(top)

    async def detach(self, rec: Record) -> None:
        """Release everything the container holds on any network (idempotent)."""
        cid = rec["Id"]
        await self._close_resolver(cid)
        changed = False
        for doc in self.all():
            if cid in (doc.get("Dockyard", {}).get("Endpoints") or {}):
                await self._drop_endpoint(doc["Id"], cid)
                changed = True
        ns = rec.get("NetworkSettings") or {}
        for entry in (ns.get("Networks") or {}).values():
            entry.update(EndpointID="", Gateway="", IPAddress="", IPPrefixLen=0, MacAddress="", DNSNames=None,
                         GlobalIPv6Address="", GlobalIPv6PrefixLen=0, IPv6Gateway="")  # fmt: skip
        if ns:
            ns.update(Ports={}, SandboxKey="", SandboxID="")
            self._fill_top_level(rec)
        if changed:
            await self._apply_rules()

    # ---- DNS -------------------------------------------------------------------------------

    def lookup(self, cid: str, name: str) -> builtins.list[str] | None:
        """Addresses of `name` on the user-defined networks `cid` is on; None when unknown."""
        name = name.lower().rstrip(".")
        found: list[str] = []
        known = False
        for doc in self.all():
            eps = doc.get("Dockyard", {}).get("Endpoints") or {}
            if cid not in eps or not self._user_defined(doc):
                continue
            aliases = {k.lower(): v.lower() for k, v in (eps[cid].get("LinkAliases") or {}).items()}
            want = aliases.get(name, name)  # a link's alias means its target, for this container only
            for ep in eps.values():
                names = {n.lower() for n in ep.get("DNSNames") or []}
                if want in names:
                    known = True
                    ip = ep["IPv4Address"].split("/")[0]
                    if ip not in found:
                        found.append(ip)
            if doc["Driver"] == "overlay" and self.overlay is not None:
                for ip in self.overlay.remote_addresses(doc["Id"], name):
                    known = True
                    if ip not in found:
                        found.append(ip)
        return found if known else None

    async def _open_resolver(self, cid: str, netns: str, rec: Record | None = None, *, rewrite: bool = True) -> None:
        if cid in self._resolvers:
            return
        if rec is not None:
            self._upstreams[cid] = self.upstreams(rec)
        upstream = self._upstreams.get(cid) or list(getattr(self.cfg, "dns", None) or [])
        r = Resolver(netns, lambda name: self.lookup(cid, name), (lambda: upstream) if upstream else host_nameservers)
        await r.open()
        self._resolvers[cid] = r
        if rewrite and rec is not None and rec.get("ResolvConfPath"):
            hc = rec["HostConfig"]
            text = embedded_resolv_conf(search=hc.get("DnsSearch") or None, options=hc.get("DnsOptions") or None)
            Path(rec["ResolvConfPath"]).write_text(text)  # in place: the file is bind-mounted

    def upstreams(self, rec: Record) -> builtins.list[str]:
        """Where the embedded resolver sends other names: the nameservers the container's
        resolv.conf would list without it (its `--dns`, else the daemon's `dns`); empty means
        the host's resolv.conf, read at each query."""
        return list(rec["HostConfig"].get("Dns") or getattr(self.cfg, "dns", None) or [])

    async def _close_resolver(self, cid: str) -> None:
        r = self._resolvers.pop(cid, None)
        self._upstreams.pop(cid, None)
        if r is not None:
            await r.close()

    # ---- connect / disconnect ------------------------------------------------------------------

    def _access(self) -> ContainerAccess:
        if self.containers is None:
            raise errdefs.Unavailable("container service not ready")
        return self.containers

    async def connect(self, net_ref: str, container_ref: str, epc: dict[str, Any] | None) -> None:
        doc = self.resolve(net_ref)
        acc = self._access()
        cid = acc.get(container_ref)["Id"]
        async with acc.lock(cid):
            rec = acc.get(cid)
            mode = rec["HostConfig"].get("NetworkMode") or ""
            if mode in ("host", "none") or mode.startswith("container:") or doc["Name"] in ("host", "none"):
                raise errdefs.PermissionDenied(
                    "container sharing network namespace with another container or host cannot be connected to any other network"
                )
            nets = rec["NetworkSettings"].setdefault("Networks", {})
            if doc["Name"] in nets or any(e.get("NetworkID") == doc["Id"] for e in nets.values()):
                raise errdefs.PermissionDenied(
                    f"endpoint with name {rec['Name'].lstrip('/')} already exists in network {doc['Name']}"
                )
            entry = self._endpoint_settings(doc, epc or {})
            if rec["State"]["Running"]:
                netns = f"/proc/{rec['State']['Pid']}/ns/net"
                has_gw = any(e.get("Gateway") for e in nets.values())
                await self._add_endpoint(rec, doc, netns, entry, default_route=not has_gw and not doc.get("Internal"))
                try:
                    if self._user_defined(doc):
                        await self._open_resolver(cid, netns, rec)
                    await self._apply_rules()
                except BaseException:
                    await self._drop_endpoint(doc["Id"], cid)
                    raise
            nets[doc["Name"]] = entry
            self._fill_top_level(rec)
            acc.save(rec)
        self.events.publish("network", "connect", doc["Id"], {"container": cid, "name": doc["Name"], "type": doc["Driver"]})

    async def disconnect(self, net_ref: str, container_ref: str, force: bool = False) -> None:
        doc = self.resolve(net_ref)
        acc = self._access()
        cid = acc.get(container_ref)["Id"]
        async with acc.lock(cid):
            rec = acc.get(cid)
            nets = rec["NetworkSettings"].get("Networks") or {}
            key = next((k for k, e in nets.items() if k == doc["Name"] or e.get("NetworkID") == doc["Id"]), None)
            if key is None:
                raise errdefs.PermissionDenied(f"container {cid} is not connected to network {doc['Name']}")
            if doc["Name"] in ("host", "none") and not force:
                raise errdefs.PermissionDenied(
                    "container cannot be disconnected from host network or connected to host network"
                )
            ep = await self._drop_endpoint(doc["Id"], cid)
            del nets[key]
            if ep and ep.get("Ports"):
                rec["NetworkSettings"]["Ports"] = {}
            if cid in self._resolvers and not any(
                cid in (d["Dockyard"].get("Endpoints") or {}) and self._user_defined(d) for d in self.all()
            ):
                await self._close_resolver(cid)
            self._fill_top_level(rec)
            acc.save(rec)
        if ep is not None:
            await self._apply_rules()
        self.events.publish("network", "disconnect", doc["Id"], {"container": cid, "name": doc["Name"], "type": doc["Driver"]})


def _pid_of(netns: str) -> int:
    """The pid in a /proc/<pid>/ns/net path; 0 for a pinned namespace (see `rebind`)."""
    parts = netns.split("/")
    return int(parts[2]) if len(parts) > 3 and parts[1] == "proc" and parts[2].isdigit() else 0
