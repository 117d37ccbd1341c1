"""Where overlay networks and their peer tables live across nodes: the `PeerSource` seam,
and its etcd implementation.

A typical flow (one daemon; every node runs the same)::

    src = EtcdPeerSource("http://10.99.0.1:2379")
    await src.create_network(doc, vni)      atomic: the name and the VNI are claimed
                                            cluster-wide, or `AlreadyExists`/`Conflict`
    async for snap in src.watch():          a full `Snapshot` (networks, peers by network)
        ...                                 now, and again after every change
    await src.claim_address(nid, ip, eid)   False when another endpoint holds the address
    await src.publish(peer)                 a local endpoint joined: every node programs it
    await src.withdraw(nid, eid, ip)        it left; its address is free again
    await src.remove_network(network_id)    the network, its name, VNI and peers are gone
    await src.close()

The watch is level-triggered: each batch of events (and each reconnect) produces a fresh
read of the whole prefix, so a missed event or a restart costs a re-read, never a wrong
table. The implementation speaks etcd's v3 JSON gateway (`/v3/kv/*`, `/v3/watch`) over
aiohttp, so no client library is needed; keys::

    /dockyard/overlay/networks/<network id>   the network document (JSON)
    /dockyard/overlay/names/<name>            network id: names are unique in the cluster
    /dockyard/overlay/vni/<vni>               network id: VNIs are unique in the cluster
    /dockyard/overlay/peers/<network id>/<endpoint id>   a `Peer` (JSON)
    /dockyard/overlay/ips/<network id>/<ip>   endpoint id: addresses are allocated cluster-wide

What it must not do: touch the kernel, or decide anything about addresses.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import aiohttp

from dockyard import errdefs
from dockyard.network.overlay import Peer

log = logging.getLogger(__name__)

PREFIX = "/dockyard/overlay/"
VNI_FIRST = 4096  # Docker's swarm allocator starts its VXLAN ids here too
VNI_LAST = (1 << 24) - 1


@dataclass(frozen=True)
class Snapshot:
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> document
    peers: dict[str, list[Peer]] = field(default_factory=dict)  # network id -> its endpoints


class PeerSource(Protocol):
    """The cluster's overlay networks and peer tables (see the module docstring)."""

    async def create_network(self, doc: dict[str, Any], vni: int) -> None: ...

    async def remove_network(self, network_id: str) -> None: ...

    async def claim_address(self, network_id: str, ip: str, endpoint_id: str) -> bool: ...

    async def publish(self, peer: Peer) -> None: ...

    async def withdraw(self, network_id: str, endpoint_id: str, ip: str) -> None: ...

    def watch(self) -> AsyncIterator[Snapshot]: ...

    async def close(self) -> None: ...


class StoreUnavailable(errdefs.Unavailable):
    """The cluster store cannot be reached."""


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _unb64(s: str) -> str:
    return base64.b64decode(s).decode()


def _prefix_end(prefix: str) -> str:
    b = bytearray(prefix.encode())
    b[-1] += 1
    return base64.b64encode(bytes(b)).decode()


def parse_snapshot(kvs: dict[str, str]) -> Snapshot:
    """The store's keys (relative to PREFIX) and values as a `Snapshot` (pure)."""
    snap = Snapshot()
    for key, value in kvs.items():
        kind, _, rest = key.partition("/")
        try:
            data = json.loads(value)
        except ValueError:
            continue
        if kind == "networks" and isinstance(data, dict):
            snap.networks[rest] = data
        elif kind == "peers" and isinstance(data, dict):
            try:
                p = Peer(**{**data, "names": tuple(data.get("names") or ())})
            except TypeError:
                continue
            snap.peers.setdefault(p.network_id, []).append(p)
    for peers in snap.peers.values():
        peers.sort(key=lambda p: p.endpoint_id)
    return snap


def free_vni(taken: set[int]) -> int:
    for vni in range(VNI_FIRST, VNI_LAST + 1):
        if vni not in taken:
            return vni
    raise errdefs.Unavailable("no free vxlan id left")


class EtcdPeerSource:
    """`PeerSource` on etcd's v3 JSON gateway."""

    def __init__(self, endpoint: str, retry_s: float = 1.0) -> None:
        self.endpoint = endpoint.rstrip("/").replace("etcd://", "http://", 1)
        self.retry_s = retry_s
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"<EtcdPeerSource {self.endpoint}>"

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=3))
        return self._session

    async def _call(self, path: str, body: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout):
                async with self._http().post(self.endpoint + path, json=body) as resp:
                    data = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise StoreUnavailable(f"cluster store {self.endpoint}: {data.get('message') or resp.status}")
                    return data  # type: ignore[no-any-return]
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise StoreUnavailable(f"cluster store {self.endpoint} is unreachable: {err}") from err

    async def read(self) -> tuple[dict[str, str], int]:
        data = await self._call("/v3/kv/range", {"key": _b64(PREFIX), "range_end": _prefix_end(PREFIX)})
        kvs = {_unb64(kv["key"])[len(PREFIX):]: _unb64(kv.get("value", "")) for kv in data.get("kvs") or []}
        return kvs, int(data.get("header", {}).get("revision") or 0)

    async def snapshot(self) -> Snapshot:
        return parse_snapshot((await self.read())[0])

    async def create_network(self, doc: dict[str, Any], vni: int) -> None:
        nid, name = doc["Id"], doc["Name"]
        keys = {f"{PREFIX}names/{name}": nid, f"{PREFIX}vni/{vni}": nid}
        req = {
            "compare": [{"key": _b64(k), "target": "CREATE", "result": "EQUAL", "create_revision": "0"} for k in keys],
            "success": [{"request_put": {"key": _b64(k), "value": _b64(v)}} for k, v in keys.items()]
            + [{"request_put": {"key": _b64(f"{PREFIX}networks/{nid}"), "value": _b64(json.dumps(doc))}}],
        }  # fmt: skip
        data = await self._call("/v3/kv/txn", req)
        if not data.get("succeeded"):
            kvs, _ = await self.read()
            if f"names/{name}" in kvs:
                raise errdefs.Conflict(f"network with name {name} already exists")
            raise errdefs.Conflict(f"vxlan id {vni} was taken meanwhile")

    async def remove_network(self, network_id: str) -> None:
        kvs, _ = await self.read()
        doc = kvs.get(f"networks/{network_id}")
        ops = [f"{PREFIX}networks/{network_id}"]
        if doc:
            d = json.loads(doc)
            ops.append(f"{PREFIX}names/{d['Name']}")
        ops += [f"{PREFIX}{k}" for k, v in kvs.items() if k.startswith("vni/") and v == network_id]
        body = {"success": [{"request_delete_range": {"key": _b64(k)}} for k in ops]}
        for kind in ("peers", "ips"):
            sub = f"{PREFIX}{kind}/{network_id}/"
            body["success"].append({"request_delete_range": {"key": _b64(sub), "range_end": _prefix_end(sub)}})
        await self._call("/v3/kv/txn", body)

    async def claim_address(self, network_id: str, ip: str, endpoint_id: str) -> bool:
        key = _b64(f"{PREFIX}ips/{network_id}/{ip}")
        req = {
            "compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": key, "value": _b64(endpoint_id)}}],
            "failure": [{"request_range": {"key": key}}],
        }
        data = await self._call("/v3/kv/txn", req)
        if data.get("succeeded"):
            return True
        kvs = ((data.get("responses") or [{}])[0].get("response_range") or {}).get("kvs") or []
        return bool(kvs) and _unb64(kvs[0].get("value", "")) == endpoint_id  # ours already

    async def publish(self, peer: Peer) -> None:
        key = f"{PREFIX}peers/{peer.network_id}/{peer.endpoint_id}"
        value = json.dumps({**asdict(peer), "names": list(peer.names)})
        await self._call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    async def withdraw(self, network_id: str, endpoint_id: str, ip: str) -> None:
        ip_key = f"{PREFIX}ips/{network_id}/{ip}"
        req = {
            "success": [{"request_delete_range": {"key": _b64(f"{PREFIX}peers/{network_id}/{endpoint_id}")}}],
        }
        await self._call("/v3/kv/txn", req)
        # the address only if this endpoint still holds it
        await self._call("/v3/kv/txn", {
            "compare": [{"key": _b64(ip_key), "target": "VALUE", "result": "EQUAL", "value": _b64(endpoint_id)}],
            "success": [{"request_delete_range": {"key": _b64(ip_key)}}],
        })  # fmt: skip

    async def watch(self) -> AsyncIterator[Snapshot]:
        """A snapshot now and after every change; reconnects (re-reading) forever."""
        while True:
            try:
                kvs, rev = await self.read()
                yield parse_snapshot(kvs)
                body = {"create_request": {"key": _b64(PREFIX), "range_end": _prefix_end(PREFIX),
                                           "start_revision": str(rev + 1)}}  # fmt: skip
                async with self._http().post(self.endpoint + "/v3/watch", json=body) as resp:
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        result = json.loads(line).get("result") or {}
                        if result.get("events"):
                            yield parse_snapshot((await self.read())[0])
            except (aiohttp.ClientError, OSError, ValueError, StoreUnavailable) as err:
                log.warning("cluster store watch: %s; again in %.0fs", err, self.retry_s)
            await asyncio.sleep(self.retry_s)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
