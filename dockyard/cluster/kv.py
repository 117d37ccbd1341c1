"""The cluster store client: etcd v3 through its JSON gateway, over aiohttp.

Owns every byte the daemon exchanges with etcd: get/put/delete, transactions
(compare-and-swap), prefix watches, leases and a leader election built on them. It must
not know what the keys mean (that is `state.py`'s).

Why the JSON gateway and not a gRPC library: aiohttp is already the daemon's HTTP stack
(no 22 MiB grpc wheel), and both Python libraries measured here (etcd3gw, aetcd) neither
fail over between endpoints nor resume watches, so we would have to write both anyway.

- Failover: requests go to the endpoint that last answered; a connection error, a
  timeout or a 5xx moves on to the next one. When every endpoint failed the call raises
  `StoreUnavailable` (HTTP 503) saying the store has no quorum or cannot be reached.
- Watches resume: `watch_prefix` remembers the last revision it delivered and re-creates
  the watch from the next one on whichever endpoint answers, so no event is lost or
  repeated across a member's death. A compacted revision raises `WatchCompacted`; the
  caller re-reads the prefix.
- Mutual TLS: an `ssl.SSLContext` with the node's certificate and the cluster CA.

Keys and values are bytes on the wire (base64 in the gateway's JSON); the methods take
str keys and bytes values. Revisions are ints (the gateway sends int64 as strings).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from dockyard import errdefs

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 3.0  # a write without quorum hangs inside etcd; say so after this long
RETRY_FOR = 4.0  # rounds over every endpoint are retried this long before giving up


class StoreUnavailable(errdefs.Unavailable):
    """No endpoint of the cluster store answered (no quorum, or all members down)."""


class WatchCompacted(Exception):
    """The revision a watch wanted to resume from was compacted away; re-read and re-watch."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"watch revision compacted (oldest kept {compact_revision})")
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True)
class Event:
    type: str  # "PUT" or "DELETE"
    kv: KV


def _b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _unb64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def _range_end_b64(prefix: str) -> str:
    b = bytearray(prefix.encode())
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return base64.b64encode(bytes(b[: i + 1])).decode()
    return base64.b64encode(b"\0").decode()


def _kv(d: dict[str, Any]) -> KV:
    return KV(
        key=_unb64(d.get("key")).decode(), value=_unb64(d.get("value")),
        mod_revision=int(d.get("mod_revision", 0)), create_revision=int(d.get("create_revision", 0)),
        version=int(d.get("version", 0)), lease=int(d.get("lease", 0)),
    )  # fmt: skip


# -- transaction building blocks (Compare and RequestOp of etcd's API) --------------------


def cmp_absent(key: str) -> dict[str, Any]:
    return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def cmp_mod_revision(key: str, rev: int) -> dict[str, Any]:
    return {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(rev)}


def cmp_value(key: str, value: bytes) -> dict[str, Any]:
    return {"key": _b64(key), "target": "VALUE", "result": "EQUAL", "value": _b64(value)}


def op_put(key: str, value: bytes, lease: int = 0) -> dict[str, Any]:
    req: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        req["lease"] = str(lease)
    return {"request_put": req}


def op_delete(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": _b64(key)}}


def op_get(key: str) -> dict[str, Any]:
    return {"request_range": {"key": _b64(key)}}


class EtcdClient:
    """One client over a list of endpoints (`https://10.0.0.1:2379`, ...)."""

    def __init__(self, endpoints: Sequence[str], ssl_context: ssl.SSLContext | None = None,
                 timeout: float = REQUEST_TIMEOUT) -> None:  # fmt: skip
        if not endpoints:
            raise errdefs.InvalidArgument("the cluster store needs at least one endpoint")
        self.endpoints = list(endpoints)
        self._current = 0
        self._ssl = ssl_context
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"<EtcdClient {self.endpoints[self._current]} of {len(self.endpoints)}>"

    def set_endpoints(self, endpoints: Sequence[str]) -> None:
        """Members come and go (join, promote, leave): the endpoint list follows them."""
        if endpoints:
            cur = self.endpoints[self._current]
            self.endpoints = list(endpoints)
            self._current = self.endpoints.index(cur) if cur in self.endpoints else 0

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            conn = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else False, limit=32)
            self._session = aiohttp.ClientSession(connector=conn)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """POST one gateway call, failing over across the endpoints; rounds over all of them
        are retried for a few seconds, which covers a leader election (≈ 1-2 s here)."""
        deadline = asyncio.get_running_loop().time() + RETRY_FOR
        while True:
            try:
                return await self._call_round(path, body, timeout)
            except StoreUnavailable:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def _call_round(self, path: str, body: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        errors: list[str] = []
        n = len(self.endpoints)
        for attempt in range(n):
            idx = (self._current + attempt) % n
            url = self.endpoints[idx] + path
            try:
                async with asyncio.timeout(timeout or self._timeout):
                    async with self._http().post(url, data=json.dumps(body)) as resp:
                        data = await resp.json(content_type=None)
                        if resp.status >= 500 or (
                            isinstance(data, dict) and "error" in data and resp.status != 200
                        ):
                            msg = (
                                data.get("error") or data.get("message")
                                if isinstance(data, dict)
                                else str(data)
                            )
                            # a member without quorum or a stopping one: try the next
                            errors.append(f"{self.endpoints[idx]}: {msg}")
                            continue
                        if resp.status >= 400:
                            raise errdefs.InvalidArgument(f"cluster store refused {path}: {data}")
                        self._current = idx
                        return data if isinstance(data, dict) else {}
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as err:
                errors.append(f"{self.endpoints[idx]}: {type(err).__name__} {err}".strip())
        raise StoreUnavailable(
            "the cluster store is unavailable (no quorum or no reachable member): " + "; ".join(errors)
        )

    # -- keys ---------------------------------------------------------------------------

    async def get(self, key: str) -> KV | None:
        data = await self.call("/v3/kv/range", {"key": _b64(key)})
        kvs = data.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    async def get_prefix(self, prefix: str) -> tuple[list[KV], int]:
        """Every key under prefix, and the store revision they were read at."""
        data = await self.call("/v3/kv/range", {"key": _b64(prefix), "range_end": _range_end_b64(prefix)})
        return [_kv(d) for d in data.get("kvs") or []], int(data.get("header", {}).get("revision", 0))

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        req: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            req["lease"] = str(lease)
        data = await self.call("/v3/kv/put", req)
        return int(data.get("header", {}).get("revision", 0))

    async def delete(self, key: str) -> int:
        data = await self.call("/v3/kv/deleterange", {"key": _b64(key)})
        return int(data.get("deleted", 0))

    async def delete_prefix(self, prefix: str) -> int:
        data = await self.call(
            "/v3/kv/deleterange", {"key": _b64(prefix), "range_end": _range_end_b64(prefix)}
        )
        return int(data.get("deleted", 0))

    async def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
                  failure: list[dict[str, Any]] | None = None) -> tuple[bool, list[dict[str, Any]]]:  # fmt: skip
        data = await self.call(
            "/v3/kv/txn", {"compare": compare, "success": success, "failure": failure or []}
        )
        return bool(data.get("succeeded")), list(data.get("responses") or [])

    async def create(self, key: str, value: bytes, lease: int = 0) -> bool:
        """Put only if the key does not exist."""
        ok, _ = await self.txn([cmp_absent(key)], [op_put(key, value, lease)])
        return ok

    async def cas(self, key: str, value: bytes, mod_revision: int) -> bool:
        """Put only if nobody changed the key since mod_revision (0: only if absent)."""
        cmp = cmp_absent(key) if mod_revision == 0 else cmp_mod_revision(key, mod_revision)
        ok, _ = await self.txn([cmp], [op_put(key, value)])
        return ok

    # -- leases -------------------------------------------------------------------------

    async def grant(self, ttl: int) -> int:
        data = await self.call("/v3/lease/grant", {"TTL": str(ttl)})
        if data.get("error"):
            raise StoreUnavailable(f"cannot grant a lease: {data['error']}")
        return int(data["ID"])

    async def keepalive(self, lease: int) -> int:
        """Refresh a lease once; returns its remaining TTL (0: it expired, make a new one)."""
        data = await self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(data.get("result", {}).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        await self.call("/v3/lease/revoke", {"ID": str(lease)})

    # -- cluster membership and health ----------------------------------------------------

    async def members(self) -> list[dict[str, Any]]:
        data = await self.call("/v3/cluster/member/list", {})
        return list(data.get("members") or [])

    async def member_add(self, peer_url: str) -> dict[str, Any]:
        data = await self.call("/v3/cluster/member/add", {"peerURLs": [peer_url]}, timeout=10)
        return data

    async def member_remove(self, member_id: str) -> None:
        await self.call("/v3/cluster/member/remove", {"ID": member_id}, timeout=10)

    # -- watches ------------------------------------------------------------------------

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        """Every change under prefix from start_revision on, for ever. A broken stream is
        re-created from the revision after the last one delivered, on the next endpoint."""
        next_rev = start_revision
        failures = 0
        while True:
            idx = self._current
            url = self.endpoints[idx] + "/v3/watch"
            body = {"create_request": {"key": _b64(prefix), "range_end": _range_end_b64(prefix),
                                       "start_revision": str(next_rev)}}  # fmt: skip
            try:
                timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=None)
                async with self._http().post(url, data=json.dumps(body), timeout=timeout) as resp:
                    if resp.status != 200:
                        raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        msg = json.loads(line)
                        if "error" in msg:
                            raise aiohttp.ClientPayloadError(str(msg["error"]))
                        result = msg.get("result") or {}
                        if int(result.get("compact_revision", 0) or 0) > 0:
                            raise WatchCompacted(int(result["compact_revision"]))
                        if result.get("canceled"):
                            raise aiohttp.ClientPayloadError(result.get("cancel_reason") or "watch canceled")
                        failures = 0
                        for ev in result.get("events") or []:
                            kv = _kv(ev.get("kv") or {})
                            next_rev = max(next_rev, kv.mod_revision + 1)
                            yield Event(ev.get("type", "PUT"), kv)
                    raise aiohttp.ClientPayloadError("watch stream ended")
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as err:
                failures += 1
                self._current = (idx + 1) % len(self.endpoints)
                log.debug("watch %s broke on %s (%s); resuming at revision %d", prefix, url, err, next_rev)
                await asyncio.sleep(min(0.1 * failures, 1.0))


class Election:
    """A leader election on one key: the leader holds `key` under its lease.

    Flow: `await campaign()` returns once this candidate holds the key (its value names
    the candidate); the key vanishes when the lease expires or `resign()` deletes it, and
    the next candidate's campaign wins. The caller keeps the lease alive and treats a lost
    lease as lost leadership (`is_leader()` re-checks in the store).
    """

    def __init__(self, client: EtcdClient, key: str, value: bytes) -> None:
        self.client, self.key, self.value = client, key, value

    async def campaign(self, lease: int, poll: float = 0.5) -> None:
        while True:
            if await self.client.create(self.key, self.value, lease):
                return
            kv = await self.client.get(self.key)
            if kv is not None and kv.value == self.value and kv.lease == lease:
                return  # already ours (a retried create whose answer was lost)
            await asyncio.sleep(poll)

    async def is_leader(self) -> bool:
        kv = await self.client.get(self.key)
        return kv is not None and kv.value == self.value

    async def leader(self) -> bytes | None:
        kv = await self.client.get(self.key)
        return kv.value if kv else None

    async def resign(self) -> None:
        await self.client.txn([cmp_value(self.key, self.value)], [op_delete(self.key)])
