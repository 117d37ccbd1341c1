"""Swarm membership of this daemon: init, join, leave, update, and the node objects.

Owns this node's local cluster state (`<data-root>/swarm/state.json` and its TLS files in
`<data-root>/swarm/certificates/`), the etcd member of a manager, the store client, the
node's liveness lease, the join endpoint a manager serves on `<addr>:2377`, and the
background loops (heartbeat, promotion/demotion, endpoint refresh) that an
`asyncio.TaskGroup`-like set of tasks owned here runs until `close()`.

Services, tasks, secrets and configs are `services.py`'s; the scheduler and the agent
are started from here because their lifetime is the membership's.

A flow: `init()` makes a cluster ID, a CA and this node's certificate, starts an etcd
member (or uses `swarm-store` from daemon.json), writes the cluster and node records,
and starts the loops. `join()` fetches the manager's CA over TLS, checks it against the
digest the token pins, sends a CSR with the token, and gets back a certificate, the etcd
endpoints and (for a manager) a member slot in etcd and the CA key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets as pysecrets
import shutil
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from dockyard import errdefs
from dockyard.cluster import ca, overlay_link, scheduler, state, tokens
from dockyard.cluster.agent import Agent, TaskRuntime
from dockyard.cluster.kv import Election, EtcdClient, StoreUnavailable
from dockyard.cluster.member import CLIENT_PORT, EtcdMember, MemberConfig
from dockyard.cluster.state import ClusterState
from dockyard.events import EventBus
from dockyard.timefmt import now_rfc3339

log = logging.getLogger(__name__)

SWARM_PORT = 2377
LEASE_TTL = 2  # seconds: a dead daemon's node is down within ~2.5 s
HEARTBEAT = 0.5

NOT_IN_SWARM = "This node is not part of a swarm"
NO_MANAGER = (  # moby's errNoManager for a node in no swarm
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to '
    "swarm and try again."
)
NOT_MANAGER = (
    "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. "
    "Please run this command on a manager node or promote the current node to a manager."
)
ALREADY = (
    'This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join another one.'
)
BAD_TOKEN = "A valid join token is necessary to join this cluster"


class NotInSwarm(errdefs.Unavailable):
    pass


def default_spec() -> dict[str, Any]:
    return {
        "Name": "default", "Labels": {},
        "Orchestration": {"TaskHistoryRetentionLimit": 5},
        "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0, "LogEntriesForSlowFollowers": 500,
                 "ElectionTick": 10, "HeartbeatTick": 1},
        "Dispatcher": {"HeartbeatPeriod": LEASE_TTL * 1_000_000_000},
        "CAConfig": {"NodeCertExpiry": ca.NODE_DAYS * 24 * 3600 * 1_000_000_000},
        "TaskDefaults": {},
        "EncryptionConfig": {"AutoLockManagers": False},
    }  # fmt: skip


@dataclass
class LocalState:
    node_id: str
    cluster_id: str
    role: str  # manager | worker
    addr: str
    endpoints: list[str]
    data_key: str  # hex; seals secrets in the store (decisions/cluster.md)
    external_store: bool = False
    remote_managers: list[str] = field(default_factory=list)  # "addr:2377"

    @classmethod
    def load(cls, path: Path) -> LocalState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


def _split_addr(value: str, default_port: int) -> tuple[str, int]:
    value = value.strip()
    if not value:
        return "", default_port
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit() and "]" not in port:
        return host.strip("[]"), int(port)
    return value.strip("[]"), default_port


def _interface_addr(name: str) -> str | None:
    """An interface name as an address (`--advertise-addr eth0`)."""
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def resolve_advertise(advertise: str, listen: str) -> str:
    for candidate in (advertise, listen):
        host, _ = _split_addr(candidate, SWARM_PORT)
        if not host or host in ("0.0.0.0", "::"):
            continue
        try:
            socket.inet_aton(host)
            return host
        except OSError:
            addr = _interface_addr(host)
            if addr:
                return addr
            raise errdefs.InvalidArgument(f"interface {host} has no usable IPv4 address") from None
    # the source address of the default route (a UDP connect sends no packet)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            addr = str(s.getsockname()[0])
        except OSError:
            addr = ""
    if not addr or addr.startswith("127."):
        raise errdefs.InvalidArgument(
            "could not choose an IP address to advertise since this system has no default route; "
            "specify one with --advertise-addr"
        )
    return addr


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class SwarmService:
    """This daemon's membership. The API's swarm and node routes call it."""

    def __init__(self, cfg: Any, engine_version: str, runtime: TaskRuntime | None = None,
                 events: EventBus | None = None, networks: Any = None) -> None:  # fmt: skip
        self.cfg = cfg
        self.engine_version = engine_version
        self.root: Path = cfg.data_root / "swarm"
        self.run_dir: Path = cfg.exec_root / "swarm"
        self.files = ca.NodeFiles(self.root / "certificates")
        self.local: LocalState | None = None
        self.kv: EtcdClient | None = None
        self.store: ClusterState | None = None
        self.member: EtcdMember | None = None
        self.lease = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._join_runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()
        self._is_leader = False
        self._info_cache: dict[str, Any] = {}
        self.runtime = runtime  # the node's containers, for the agent
        self.events = events
        self.agent: Agent | None = None
        self.networks = networks  # the node's NetworkService: overlay networks join it in swarm mode

    def __repr__(self) -> str:
        st = self.local
        return f"<SwarmService {st.node_id} {st.role}>" if st else "<SwarmService inactive>"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """At daemon start: rejoin the cluster this node was in, if any."""
        self.local = LocalState.load(self.state_file)
        if self.local is None:
            return
        try:
            await self._connect(initial_cluster="", member_state="existing")
        except Exception:  # a start must not fail on the cluster: the node says why in /info
            log.exception("cannot rejoin the swarm at start")

    async def close(self) -> None:
        await self._stop_loops()
        ov = getattr(self.networks, "overlay", None)
        if ov is not None:  # it reads through our store client: stop it before the client goes
            await ov.close()
            self.networks.overlay = None
        if self.member is not None:
            await self.member.stop()
            self.member = None
        if self.kv is not None:
            await self.kv.close()
            self.kv = None

    async def _stop_loops(self) -> None:
        if self.agent is not None:
            await self.agent.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self._join_runner is not None:
            await self._join_runner.cleanup()
            self._join_runner = None

    async def _attach_overlay(self) -> None:
        assert self.kv is not None and self.local is not None
        try:
            await overlay_link.attach(self.networks, self.cfg, self.kv, self.local.addr)
        except Exception:  # the node still runs tasks on node-local networks
            log.exception("overlay networks are not available on this node")

    def _start_agent(self) -> None:
        if self.runtime is None or self.store is None or self.local is None:
            return
        self.agent = Agent(self.local.node_id, self.store, self.runtime, bytes.fromhex(self.local.data_key),
                           self.run_dir / "secrets")  # fmt: skip
        self._spawn(self.agent.run(), "swarm-agent")
        if self.events is not None:
            self._spawn(self._forward_events(self.agent), "swarm-agent-events")

    async def _forward_events(self, agent: Agent) -> None:
        """A task container that dies wakes the agent at once (no waiting for its tick)."""
        assert self.events is not None
        q = self.events.subscribe()
        try:
            while True:
                item = await q.get()
                if item is None:  # dropped for falling behind: listen again (the tick converged meanwhile)
                    self.events.unsubscribe(q)
                    q = self.events.subscribe()
                    continue
                ev = item[0]
                if ev.get("Type") == "container" and "com.docker.swarm.task.id" in ev["Actor"]["Attributes"]:
                    agent.wake.set()
        finally:
            self.events.unsubscribe(q)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro, name=name))  # type: ignore[arg-type]

    def _member_cfg(self) -> MemberConfig:
        assert self.local is not None
        return MemberConfig(self.local.node_id, self.local.addr, self.root / "etcd", self.run_dir, self.files,
                            self.local.cluster_id)  # fmt: skip

    def _client_tls(self) -> ssl.SSLContext:
        t = self.cfg.swarm_store_tls
        if self.local is not None and self.local.external_store:
            if not t:
                return None  # type: ignore[return-value]
            ctx = ssl.create_default_context(cafile=t.get("cacert"))
            if t.get("cert"):
                ctx.load_cert_chain(t["cert"], t.get("key"))
            return ctx
        return ca.client_context(self.files)

    async def _connect(self, initial_cluster: str, member_state: str) -> None:
        """Start the member (managers), the store client and the loops."""
        st = self.local
        assert st is not None
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if st.role == "manager" and not st.external_store:
            self.member = EtcdMember(self._member_cfg())
            await self.member.start(initial_cluster, member_state)
        self.kv = EtcdClient(st.endpoints, self._client_tls())
        self.store = ClusterState(self.kv)
        self._spawn(self._heartbeat(), "swarm-heartbeat")
        self._spawn(self._refresh_loop(), "swarm-refresh")
        if st.role == "manager":
            await self._start_manager_side()
        else:
            await self._serve_endpoint()
        await self._attach_overlay()
        self._start_agent()

    async def _serve_endpoint(self) -> None:
        """The node endpoint on <addr>:2377: task logs for the other nodes, and on a
        manager the join and promotion routes too."""
        assert self.local is not None
        from dockyard.cluster.join import join_app

        if self._join_runner is not None:
            await self._join_runner.cleanup()
        self._join_runner = web.AppRunner(join_app(self, self.local.role == "manager"), access_log=None)
        await self._join_runner.setup()
        site = web.TCPSite(self._join_runner, self.local.addr, SWARM_PORT,
                           ssl_context=ca.server_context(self.files), reuse_address=True)  # fmt: skip
        await site.start()

    async def _start_manager_side(self) -> None:
        await self._serve_endpoint()
        self._spawn(self._leader_loop(), "swarm-leader")

    async def _ready(self, timeout: float = 20) -> None:
        assert self.kv is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.kv.get(state.CLUSTER)
                return
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def _local_member_ready(self, timeout: float) -> None:
        """A new manager's own member has caught up: a read through it alone succeeds."""
        assert self.member is not None
        local = EtcdClient([self.member.cfg.client_url], self._client_tls(), timeout=2)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    await local.get(state.CLUSTER)
                    return
                except StoreUnavailable:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        finally:
            await local.close()

    # -- loops --------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Liveness: alive/<id> under a short lease, refreshed every HEARTBEAT seconds."""
        assert self.kv is not None and self.local is not None
        alive_key = state.key("alive", self.local.node_id)
        while True:
            try:
                if not self.lease or await self.kv.keepalive(self.lease) <= 0:
                    self.lease = await self.kv.grant(LEASE_TTL)
                    await self.kv.put(alive_key, b"1", self.lease)
            except StoreUnavailable as err:
                log.debug("heartbeat: %s", err)
            except Exception:
                log.exception("heartbeat failed")
            await asyncio.sleep(HEARTBEAT)

    async def _leader_loop(self) -> None:
        """Campaign for scheduler leadership under this node's lease; run the manager hooks
        (the scheduler) while leader."""
        assert self.kv is not None and self.local is not None
        election = Election(self.kv, state.LEADER, self.local.node_id.encode())
        while True:
            try:
                while not self.lease:
                    await asyncio.sleep(0.1)
                await election.campaign(self.lease)
                self._is_leader = True
                log.info("this node leads the scheduler")
                assert self.store is not None
                wake = asyncio.Event()
                loop = asyncio.get_running_loop()
                running = [
                    loop.create_task(scheduler.run(self.store, wake), name="scheduler"),
                    loop.create_task(scheduler.watch_changes(self.store, wake), name="scheduler-watch"),
                ]
                try:
                    while await election.is_leader():
                        await asyncio.sleep(0.5)
                finally:
                    self._is_leader = False
                    for t in running:
                        t.cancel()
                    for t in running:
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await t
                log.info("this node lost scheduler leadership")
            except StoreUnavailable:
                self._is_leader = False
                await asyncio.sleep(0.5)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("leader loop")
                await asyncio.sleep(0.5)

    async def _refresh_loop(self) -> None:
        """Follow the store's members (endpoints), this node's role, and cache /info numbers."""
        assert self.kv is not None and self.store is not None and self.local is not None
        while True:
            await asyncio.sleep(1.0)
            try:
                st = self.local
                if not st.external_store:
                    urls = [u for m in await self.kv.members() for u in m.get("clientURLs") or []]
                    if urls and sorted(urls) != sorted(st.endpoints):
                        st.endpoints = urls
                        st.save(self.state_file)
                        self.kv.set_endpoints(urls)
                nodes = await self.store.list("nodes")
                me = next((n for n in nodes if n.id == st.node_id), None)
                managers = [n for n in nodes if n.data["Spec"]["Role"] == "manager"]
                st.remote_managers = [f"{n.data['Addr']}:{SWARM_PORT}" for n in managers]
                self._info_cache = {"Nodes": len(nodes), "Managers": len(managers),
                                    "RemoteManagers": [{"NodeID": n.id, "Addr": f"{n.data['Addr']}:{SWARM_PORT}"}
                                                       for n in managers]}  # fmt: skip
                if me is None:
                    log.warning("this node was removed from the swarm")
                    continue
                want = me.data["Spec"]["Role"]
                if want != st.role:
                    await self._change_role(want)
            except StoreUnavailable as err:
                log.debug("refresh: %s", err)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("refresh loop")

    async def _change_role(self, want: str) -> None:
        """Promotion starts an etcd member here; demotion removes it (decisions/cluster.md)."""
        st = self.local
        assert st is not None and self.kv is not None
        if st.external_store:
            st.role = want
            st.save(self.state_file)
            return
        if want == "manager":
            from dockyard.cluster.join import request_promotion

            answer = await request_promotion(self.files, st.addr, st.remote_managers)
            self.files.ca_key.write_bytes(answer["CAKey"].encode())
            self.files.ca_key.chmod(0o600)
            st.role = "manager"
            st.save(self.state_file)
            self.member = EtcdMember(self._member_cfg())
            await self.member.start(answer["InitialCluster"], "existing")
            await self._start_manager_side()
        else:
            members = await self.kv.members()
            mine = next((m for m in members if m.get("name") == st.node_id), None)
            if mine is not None:
                await self.kv.member_remove(mine["ID"])
            st.role = "worker"
            st.save(self.state_file)
            if self.member is not None:
                await self.member.stop(remove_data=True)
                self.member = None
            self.files.ca_key.unlink(missing_ok=True)
            await self._serve_endpoint()  # no joins taken here any more
            for t in [t for t in self._tasks if t.get_name() == "swarm-leader"]:
                t.cancel()
                self._tasks.remove(t)
            self.kv.set_endpoints(
                [u for m in members if m.get("name") != st.node_id for u in m.get("clientURLs") or []]
            )
        log.info("this node is now a %s", want)

    # -- guards ---------------------------------------------------------------------------

    def member_state(self, swarm_route: bool = False) -> ClusterState:
        """The store, or Docker's 503: `swarm_route` (leave, and the record a member reads)
        says the node is in no swarm; the rest (GET /swarm, update, unlockkey, nodes,
        services, tasks, secrets, configs) that it is no manager — dockerd's words, compared
        live by tests/integration/test_api_conformance.py."""
        if self.local is None or self.store is None:
            raise NotInSwarm(NOT_IN_SWARM if swarm_route else NO_MANAGER)
        return self.store

    def manager_state(self, swarm_route: bool = False) -> ClusterState:
        s = self.member_state(swarm_route)
        assert self.local is not None
        if self.local.role != "manager":
            raise errdefs.Unavailable(NOT_MANAGER)
        return s

    @property
    def node_id(self) -> str:
        return self.local.node_id if self.local else ""

    # -- init / join / leave --------------------------------------------------------------

    async def init(self, req: dict[str, Any]) -> str:
        async with self._lock:
            if self.local is not None:
                raise errdefs.Unavailable(ALREADY)
            addr = resolve_advertise(str(req.get("AdvertiseAddr") or ""), str(req.get("ListenAddr") or ""))
            cluster_id, node_id = tokens.new_id(), tokens.new_id()
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(parents=True, mode=0o700)
            try:
                await ca.create_ca(self.files, cluster_id)
                csr = await ca.make_key_and_csr(self.files)
                self.files.cert.write_bytes(
                    await ca.sign(self.files, csr, node_id, "manager", cluster_id, [addr])
                )
                external = bool(self.cfg.swarm_store)
                endpoints = list(self.cfg.swarm_store) or [f"https://{addr}:{CLIENT_PORT}"]
                self.local = LocalState(node_id, cluster_id, "manager", addr, endpoints,
                                        pysecrets.token_hex(32), external)  # fmt: skip
                await self._connect_new(req, addr)
            except BaseException:
                await self.close()
                self.local = None
                shutil.rmtree(self.root, ignore_errors=True)
                raise
            self.local.save(self.state_file)
            return node_id

    async def _connect_new(self, req: dict[str, Any], addr: str) -> None:
        st = self.local
        assert st is not None
        if not st.external_store:
            self.member = EtcdMember(self._member_cfg())
            await self.member.start("", "new")
        self.kv = EtcdClient(st.endpoints, self._client_tls())
        self.store = ClusterState(self.kv)
        await self._ready()
        spec = default_spec()
        for k, v in (req.get("Spec") or {}).items():
            if v not in (None, {}, ""):
                spec[k] = v
        ca_pem = self.files.ca_cert.read_bytes()
        now = now_rfc3339()
        cluster = {
            "ID": st.cluster_id, "CreatedAt": now, "UpdatedAt": now, "Spec": spec,
            "CADigest": ca.digest(ca_pem), "CACert": ca_pem.decode(),
            "WorkerSecret": tokens.new_secret(), "ManagerSecret": tokens.new_secret(),
            "DefaultAddrPool": req.get("DefaultAddrPool") or ["10.0.0.0/8"],
            "SubnetSize": int(req.get("SubnetSize") or 24), "DataPathPort": int(req.get("DataPathPort") or 4789),
        }  # fmt: skip
        if not await self.kv.create(state.CLUSTER, state.dump(cluster)):
            raise errdefs.Conflict("the cluster store already holds a swarm; join it instead")
        await self.store.put("nodes", st.node_id, self._node_record("manager"))
        await self._start_loops_after_create()

    async def _start_loops_after_create(self) -> None:
        assert self.local is not None
        self._spawn(self._heartbeat(), "swarm-heartbeat")
        self._spawn(self._refresh_loop(), "swarm-refresh")
        if self.local.role == "manager":
            await self._start_manager_side()
        else:
            await self._serve_endpoint()
        await self._attach_overlay()
        self._start_agent()

    def _description(self) -> dict[str, Any]:
        return {
            "Hostname": socket.gethostname(),
            "Platform": {"Architecture": os.uname().machine, "OS": "linux"},
            "Resources": {"NanoCPUs": (os.cpu_count() or 1) * 1_000_000_000, "MemoryBytes": _mem_total()},
            "Engine": {"EngineVersion": self.engine_version,
                       "Labels": dict(x.split("=", 1) if "=" in x else (x, "") for x in self.cfg.labels),
                       "Plugins": [{"Type": "Network", "Name": "bridge"}, {"Type": "Network", "Name": "overlay"},
                                   {"Type": "Volume", "Name": "local"}]},
        }  # fmt: skip

    def _node_record(self, role: str) -> dict[str, Any]:
        assert self.local is not None
        now = now_rfc3339()
        return {"ID": self.local.node_id, "CreatedAt": now, "UpdatedAt": now,
                "Spec": {"Labels": {}, "Role": role, "Availability": "active"},
                "Description": self._description(), "Addr": self.local.addr}  # fmt: skip

    async def join(self, req: dict[str, Any]) -> None:
        from dockyard.cluster.join import request_join

        async with self._lock:
            if self.local is not None:
                raise errdefs.Unavailable(ALREADY)
            token = tokens.parse(str(req.get("JoinToken") or ""))
            remotes = [str(r) for r in req.get("RemoteAddrs") or []]
            if not remotes:
                raise errdefs.InvalidArgument("at least 1 RemoteAddr is required to join")
            addr = resolve_advertise(str(req.get("AdvertiseAddr") or ""), str(req.get("ListenAddr") or ""))
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(parents=True, mode=0o700)
            try:
                csr = await ca.make_key_and_csr(self.files)
                answer = await request_join(remotes, token, {
                    "Token": str(req["JoinToken"]), "CSR": csr.decode(), "Addr": addr,
                    "Description": self._description(),
                }, self.files)  # fmt: skip
                self.files.cert.write_bytes(answer["Cert"].encode())
                if answer.get("CAKey"):
                    self.files.ca_key.write_bytes(answer["CAKey"].encode())
                    self.files.ca_key.chmod(0o600)
                role = answer["Role"]
                external = bool(answer.get("ExternalStore"))
                endpoints = list(answer["Endpoints"])
                if role == "manager" and not external:
                    endpoints = [f"https://{addr}:{CLIENT_PORT}", *endpoints]
                self.local = LocalState(answer["NodeID"], answer["ClusterID"], role, addr, endpoints,
                                        answer["DataKey"], external, remote_managers=remotes)  # fmt: skip
                if external and answer.get("StoreTLS"):
                    log.warning(
                        "joined a swarm on an external store: its TLS files must be configured here too"
                    )
                await self._connect(answer.get("InitialCluster", ""), "existing")
                await self._ready(30)
                if self.member is not None:
                    await self._local_member_ready(30)
            except BaseException:
                await self.close()
                self.local = None
                shutil.rmtree(self.root, ignore_errors=True)
                raise
            self.local.save(self.state_file)

    async def leave(self, force: bool) -> None:
        async with self._lock:
            st = self.local
            if st is None:
                raise errdefs.Unavailable(NOT_IN_SWARM)
            if st.role == "manager" and not force:
                n = len([m for m in self._info_cache.get("RemoteManagers") or []]) or 1
                raise errdefs.Unavailable(
                    "You are attempting to leave the swarm on a node that is participating as a manager. "
                    f"Removing this node leaves {n - 1} managers out of a possible {n}. "
                    "Use `--force` to ignore this message."
                )
            await self._stop_loops()
            if self.agent is not None:
                with contextlib.suppress(Exception):
                    await self.agent.leave()
                self.agent = None
            with contextlib.suppress(Exception):
                await overlay_link.detach(self.networks)
            if self.kv is not None:
                with contextlib.suppress(Exception):
                    if self.lease:
                        await self.kv.revoke(self.lease)
                if st.role == "manager" and self.member is not None:
                    with contextlib.suppress(Exception):
                        members = await self.kv.members()
                        mine = next((m for m in members if m.get("name") == st.node_id), None)
                        if mine is not None and len(members) > 1:
                            await self.kv.member_remove(mine["ID"])
            self.lease = 0
            await self.close()
            self.local = None
            self.store = None
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.run_dir, ignore_errors=True)

    # -- the swarm object -----------------------------------------------------------------

    async def cluster_record(self) -> state.Obj:
        s = self.member_state(swarm_route=True)
        obj = await s.cluster()
        if obj is None:
            raise errdefs.Unavailable(NOT_IN_SWARM)
        return obj

    def _view(self, obj: state.Obj, with_tokens: bool) -> dict[str, Any]:
        d = obj.data
        ca_pem = d.get("CACert", "")
        out: dict[str, Any] = {
            "ID": d["ID"], "Version": {"Index": obj.revision}, "CreatedAt": d["CreatedAt"],
            "UpdatedAt": d.get("UpdatedAt", d["CreatedAt"]), "Spec": d["Spec"],
            "TLSInfo": {"TrustRoot": ca_pem, "CertIssuerSubject": "", "CertIssuerPublicKey": ""},
            "RootRotationInProgress": False, "DataPathPort": d.get("DataPathPort", 4789),
            "DefaultAddrPool": d.get("DefaultAddrPool"), "SubnetSize": d.get("SubnetSize", 24),
        }  # fmt: skip
        if with_tokens:
            out["JoinTokens"] = {"Worker": tokens.make(d["CADigest"], d["WorkerSecret"]),
                                 "Manager": tokens.make(d["CADigest"], d["ManagerSecret"])}  # fmt: skip
        return out

    async def inspect(self) -> dict[str, Any]:
        self.manager_state()
        return self._view(await self.cluster_record(), True)

    async def update(self, spec: dict[str, Any], version: int | None, rotate_worker: bool, rotate_manager: bool,
                     rotate_unlock: bool) -> None:  # fmt: skip
        s = self.manager_state()
        obj = await self.cluster_record()
        if version is None:
            raise errdefs.InvalidArgument("invalid swarm version: the version parameter is required")
        d = dict(obj.data)
        if spec:
            merged = default_spec()
            merged.update({k: v for k, v in spec.items() if v is not None})
            if merged.get("EncryptionConfig", {}).get("AutoLockManagers"):
                raise errdefs.Unsupported("autolock is not supported by this engine")
            d["Spec"] = merged
        if rotate_worker:
            d["WorkerSecret"] = tokens.new_secret()
        if rotate_manager:
            d["ManagerSecret"] = tokens.new_secret()
        d["UpdatedAt"] = now_rfc3339()
        if not await s.kv.cas(state.CLUSTER, state.dump(d), version):
            raise errdefs.Conflict(
                "update out of sequence: the swarm changed since this version; inspect it and retry"
            )

    def unlock_key(self) -> dict[str, str]:
        self.manager_state()
        return {"UnlockKey": ""}  # autolock is refused, so there is never a key

    # -- the join endpoint's side (managers) ----------------------------------------------

    async def accept_join(self, body: dict[str, Any]) -> dict[str, Any]:
        s = self.manager_state()
        st = self.local
        assert st is not None
        try:
            tok = tokens.parse(str(body.get("Token") or ""))
        except errdefs.InvalidArgument:
            raise errdefs.InvalidArgument(BAD_TOKEN) from None
        obj = await self.cluster_record()
        d = obj.data
        if tok.ca_digest != d["CADigest"]:
            raise errdefs.InvalidArgument(BAD_TOKEN)
        if tokens.matches(tok, d["ManagerSecret"]):
            role = "manager"
        elif tokens.matches(tok, d["WorkerSecret"]):
            role = "worker"
        else:
            raise errdefs.InvalidArgument(BAD_TOKEN)
        addr = str(body.get("Addr") or "")
        node_id = tokens.new_id()
        cert = await ca.sign(
            self.files, str(body.get("CSR") or "").encode(), node_id, role, st.cluster_id, [addr]
        )
        now = now_rfc3339()
        desc = body.get("Description") if isinstance(body.get("Description"), dict) else {}
        await s.put("nodes", node_id, {"ID": node_id, "CreatedAt": now, "UpdatedAt": now,
                                       "Spec": {"Labels": {}, "Role": role, "Availability": "active"},
                                       "Description": desc, "Addr": addr})  # fmt: skip
        answer: dict[str, Any] = {
            "NodeID": node_id, "ClusterID": st.cluster_id, "Role": role, "Cert": cert.decode(),
            "CA": self.files.ca_cert.read_text(), "DataKey": st.data_key, "ExternalStore": st.external_store,
            "Endpoints": st.endpoints,
        }  # fmt: skip
        if role == "manager":
            answer.update(await self._add_member(node_id, addr))
        return answer

    async def _add_member(self, node_id: str, addr: str) -> dict[str, Any]:
        assert self.kv is not None and self.local is not None
        out: dict[str, Any] = {"CAKey": self.files.ca_key.read_text()}
        if self.local.external_store:
            return out
        peer = f"https://{addr}:2380"
        existing = await self.kv.members()
        if not any(peer in (m.get("peerURLs") or []) for m in existing):
            # etcd refuses a reconfiguration while a recent member is not yet connected
            # ("unhealthy cluster"): that passes within seconds, so retry for a while
            deadline = time.monotonic() + 20
            while True:
                try:
                    await self.kv.member_add(peer)
                    break
                except StoreUnavailable as err:
                    if "unhealthy cluster" not in str(err) or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.3)
        members = await self.kv.members()
        parts = [f"{m.get('name') or node_id}={u}" for m in members for u in (m.get("peerURLs") or [])
                 if m.get("name") or u == peer]  # fmt: skip
        out["InitialCluster"] = ",".join(parts)
        return out

    async def accept_promotion(self, node_id: str) -> dict[str, Any]:
        s = self.manager_state()
        node = await s.get("nodes", node_id)
        if node is None or node.data["Spec"]["Role"] != "manager":
            raise errdefs.PermissionDenied(f"node {node_id} is not to be a manager")
        return await self._add_member(node_id, node.data["Addr"])

    def local_log_path(self, task_id: str) -> str | None:
        """The log file of a task's container on this node."""
        if self.runtime is None:
            return None
        for r in self.runtime.all():
            if (r.get("Config", {}).get("Labels") or {}).get("com.docker.swarm.task.id") == task_id:
                return str(r["LogPath"])
        return None

    async def local_task(self, task_id: str) -> tuple[dict[str, Any], str] | None:
        """A task with a container here, and its log file (the node endpoint's logs route)."""
        path = self.local_log_path(task_id)
        if path is None or self.store is None:
            return None
        t = await self.store.get("tasks", task_id)
        return (t.data, path) if t is not None else None

    # -- /info and /_ping -----------------------------------------------------------------

    def info_section(self) -> dict[str, Any]:
        st = self.local
        if st is None:
            return {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                    "Error": "", "RemoteManagers": None}  # fmt: skip
        c = self._info_cache
        out: dict[str, Any] = {
            "NodeID": st.node_id, "NodeAddr": st.addr, "LocalNodeState": "active",
            "ControlAvailable": st.role == "manager", "Error": "",
            # until the first refresh: the managers this node joined through (or itself, a manager)
            "RemoteManagers": c.get("RemoteManagers") or (
                [{"NodeID": "", "Addr": r} for r in st.remote_managers] if st.role == "worker"
                else [{"NodeID": st.node_id, "Addr": f"{st.addr}:{SWARM_PORT}"}]),
            "Nodes": c.get("Nodes", 1), "Managers": c.get("Managers", 1),
        }  # fmt: skip
        cluster = c.get("Cluster")
        if st.role == "manager" and cluster:
            out["Cluster"] = cluster
        return out

    async def info_section_fresh(self) -> dict[str, Any]:
        out = self.info_section()
        if self.local is not None and self.local.role == "manager" and self.store is not None:
            with contextlib.suppress(errdefs.DockyardError):
                obj = await self.cluster_record()
                out["Cluster"] = self._view(obj, False)
                nodes = await self.store.list("nodes")
                managers = [n for n in nodes if n.data["Spec"]["Role"] == "manager"]
                out["Nodes"], out["Managers"] = len(nodes), len(managers)
                out["RemoteManagers"] = [
                    {"NodeID": n.id, "Addr": f"{n.data['Addr']}:{SWARM_PORT}"} for n in managers
                ]
        return out

    def ping_state(self) -> str:
        if self.local is None:
            return "inactive"
        return f"active/{self.local.role}"

    # -- nodes ----------------------------------------------------------------------------

    async def alive_ids(self) -> set[str]:
        s = self.member_state()
        kvs, _ = await s.kv.get_prefix(state.prefix("alive"))
        return {kv.key.rsplit("/", 1)[1] for kv in kvs}

    async def leader_id(self) -> str:
        s = self.member_state()
        kv = await s.kv.get(state.LEADER)
        return kv.value.decode() if kv else ""

    def node_view(self, obj: state.Obj, alive: set[str], leader: str) -> dict[str, Any]:
        d = obj.data
        up = obj.id in alive
        view: dict[str, Any] = {
            "ID": obj.id, "Version": {"Index": obj.revision}, "CreatedAt": d["CreatedAt"],
            "UpdatedAt": d.get("UpdatedAt", d["CreatedAt"]), "Spec": d["Spec"], "Description": d.get("Description", {}),
            "Status": {"State": "ready" if up else "down", "Addr": d.get("Addr", "")},
        }  # fmt: skip
        if d["Spec"]["Role"] == "manager":
            view["ManagerStatus"] = {"Leader": obj.id == leader, "Reachability": "reachable" if up else "unreachable",
                                     "Addr": f"{d.get('Addr', '')}:{SWARM_PORT}"}  # fmt: skip
        if not up:
            view["Status"]["Message"] = "heartbeat failure"
        return view

    async def find_node(self, ref: str) -> state.Obj:
        s = self.manager_state()
        nodes = await s.list("nodes")
        matchers: list[Callable[[state.Obj], bool]] = [
            lambda n: n.id == ref, lambda n: n.data.get("Description", {}).get("Hostname") == ref,
            lambda n: n.id.startswith(ref),
        ]  # fmt: skip
        for match in matchers:
            found = [n for n in nodes if match(n)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise errdefs.InvalidArgument(f"node {ref} is ambiguous ({len(found)} matches found)")
        raise errdefs.NotFound(f"node {ref} not found")

    async def list_nodes(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        s = self.manager_state()
        alive, leader = await self.alive_ids(), await self.leader_id()
        views = [self.node_view(n, alive, leader) for n in await s.list("nodes")]
        for k, vals in filters.items():
            if k == "id":
                views = [v for v in views if any(v["ID"].startswith(x) for x in vals)]
            elif k == "name":
                views = [v for v in views if any(x in (v["Description"].get("Hostname") or "") for x in vals)]
            elif k == "role":
                views = [v for v in views if v["Spec"]["Role"] in vals]
            elif k == "membership":
                views = [v for v in views if "accepted" in vals]
            elif k in ("label", "node.label"):
                src = "Engine" if k == "label" else "Spec"

                def has(v: dict[str, Any], src: str = src, vals: list[str] = vals) -> bool:
                    labels = (
                        v["Description"].get("Engine", {}).get("Labels")
                        if src == "Engine"
                        else v["Spec"]["Labels"]
                    )
                    labels = labels or {}
                    return all(
                        (x.split("=", 1)[0] in labels)
                        if "=" not in x
                        else labels.get(x.split("=", 1)[0]) == x.split("=", 1)[1]
                        for x in vals
                    )

                views = [v for v in views if has(v)]
            else:
                raise errdefs.InvalidArgument(f"invalid filter '{k}'")
        return views

    async def inspect_node(self, ref: str) -> dict[str, Any]:
        obj = await self.find_node(ref)
        return self.node_view(obj, await self.alive_ids(), await self.leader_id())

    async def update_node(self, ref: str, version: int | None, spec: dict[str, Any]) -> None:
        s = self.manager_state()
        obj = await self.find_node(ref)
        if version is None:
            raise errdefs.InvalidArgument("invalid node version: the version parameter is required")
        role = spec.get("Role") or obj.data["Spec"]["Role"]
        avail = spec.get("Availability") or obj.data["Spec"]["Availability"]
        if role not in ("worker", "manager"):
            raise errdefs.InvalidArgument(f"invalid role {role!r}: must be worker or manager")
        if avail not in ("active", "pause", "drain"):
            raise errdefs.InvalidArgument(f"invalid availability {avail!r}: must be active, pause or drain")
        labels = spec.get("Labels") or {}
        if not isinstance(labels, dict):
            raise errdefs.InvalidArgument("invalid node labels: expected an object")
        if role == "worker" and obj.data["Spec"]["Role"] == "manager":
            managers = [n for n in await s.list("nodes") if n.data["Spec"]["Role"] == "manager"]
            if len(managers) <= 1:
                raise errdefs.InvalidArgument("attempting to demote the last manager of the swarm")
        d = dict(obj.data)
        d["Spec"] = {
            "Labels": {str(k): str(v) for k, v in labels.items()},
            "Role": role,
            "Availability": avail,
        }
        if spec.get("Name"):
            d["Spec"]["Name"] = str(spec["Name"])
        d["UpdatedAt"] = now_rfc3339()
        await s.update("nodes", obj.id, d, version)

    async def remove_node(self, ref: str, force: bool) -> None:
        s = self.manager_state()
        obj = await self.find_node(ref)
        if obj.data["Spec"]["Role"] == "manager":
            raise errdefs.Conflict(
                f"rpc error: code = FailedPrecondition desc = node {obj.id} is a cluster manager and is a member of "
                "the raft cluster. It must be demoted to worker before removal"
            )
        if not force and obj.id in await self.alive_ids():
            raise errdefs.Conflict(
                f"rpc error: code = FailedPrecondition desc = node {obj.id} is not down and can't be removed"
            )
        await s.delete("nodes", obj.id)
        await s.kv.delete(state.key("alive", obj.id))
