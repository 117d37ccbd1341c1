"""The cluster store client against real etcd members on loopback: keys, compare-and-swap,
leases, election, failover between endpoints, watches resumed across a member's death,
and mutual TLS."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from dockyard.cluster import ca
from dockyard.cluster.kv import Election, EtcdClient, Event, StoreUnavailable
from dockyard.cluster.member import EtcdMember, MemberConfig

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd-server is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="dy-kv-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


@asynccontextmanager
async def members(tmp: Path, n: int, tls: ca.NodeFiles | None = None) -> AsyncIterator[list[EtcdMember]]:
    cfgs = [
        MemberConfig(f"m{i}", "127.0.0.1", tmp / f"m{i}" / "etcd", tmp / f"m{i}" / "run", tls, "test",
                     _free_port(), _free_port())
        for i in range(n)
    ]  # fmt: skip
    ms = [EtcdMember(c) for c in cfgs]
    initial = ",".join(f"{c.name}={c.peer_url}" for c in cfgs)
    try:
        for m in ms:
            await m.start(initial, "new")
        yield ms
    finally:
        for m in ms:
            await m.stop(remove_data=True)
        for m in ms:
            assert not m.alive()


async def _ready(client: EtcdClient) -> None:
    for _ in range(100):
        try:
            await client.put("/ready", b"1")
            return
        except StoreUnavailable:
            await asyncio.sleep(0.1)
    raise AssertionError("etcd did not become ready")


def test_keys_cas_prefix_and_leases(tmp: Path) -> None:
    async def body() -> None:
        async with members(tmp, 1) as ms:
            c = EtcdClient([ms[0].cfg.client_url])
            await _ready(c)
            await c.put("/t/a", b"1")
            await c.put("/t/b", b"2")
            await c.put("/u", b"3")
            kvs, rev = await c.get_prefix("/t/")
            assert [(k.key, k.value) for k in kvs] == [("/t/a", b"1"), ("/t/b", b"2")]
            assert rev >= kvs[-1].mod_revision
            a = await c.get("/t/a")
            assert a is not None
            assert await c.cas("/t/a", b"x", a.mod_revision)
            assert not await c.cas("/t/a", b"y", a.mod_revision)  # stale revision: refused
            assert not await c.create("/t/a", b"z")
            assert (await c.get("/t/a")).value == b"x"  # type: ignore[union-attr]
            lease = await c.grant(2)
            await c.put("/t/leased", b"1", lease)
            assert await c.keepalive(lease) > 0
            await c.revoke(lease)
            assert await c.get("/t/leased") is None
            assert await c.delete_prefix("/t/") == 2
            await c.close()

    run(body())


def test_failover_election_and_watch_resume(tmp: Path) -> None:
    async def body() -> None:
        async with members(tmp, 3) as ms:
            c = EtcdClient([m.cfg.client_url for m in ms])
            await _ready(c)
            _, rev = await c.get_prefix("/w/")
            seen: list[Event] = []

            async def watch() -> None:
                async for ev in c.watch_prefix("/w/", rev + 1):
                    seen.append(ev)

            w = asyncio.create_task(watch())
            await c.put("/w/1", b"a")
            # kill the member the client talks to: calls and the watch move on
            current = next(m for m in ms if m.cfg.client_url == c.endpoints[c._current])
            await current.stop()
            for i in range(2, 6):
                for _ in range(50):
                    try:
                        await c.put(f"/w/{i}", b"b")
                        break
                    except StoreUnavailable:
                        await asyncio.sleep(0.1)
            for _ in range(100):
                if len(seen) >= 5:
                    break
                await asyncio.sleep(0.05)
            w.cancel()
            keys = [e.kv.key for e in seen]
            assert keys == ["/w/1", "/w/2", "/w/3", "/w/4", "/w/5"], keys  # none lost, none twice

            lease_a, lease_b = await c.grant(2), await c.grant(2)
            ea, eb = Election(c, "/leader", b"a"), Election(c, "/leader", b"b")
            await ea.campaign(lease_a)
            assert await ea.is_leader()
            b_task = asyncio.create_task(eb.campaign(lease_b, poll=0.05))
            await asyncio.sleep(0.3)
            assert not b_task.done()
            await c.revoke(lease_a)  # the leader's lease ends: the other candidate wins
            await asyncio.wait_for(b_task, 5)
            assert await c.get("/leader") is not None and await eb.is_leader()

            # two of three members down: no quorum, writes fail clearly
            other = next(m for m in ms if m.alive())
            await other.stop()
            with pytest.raises(StoreUnavailable, match="no quorum"):
                await c.put("/w/x", b"1")
            await c.close()

    run(body())


def test_mutual_tls_refuses_a_client_without_certificate(tmp: Path) -> None:
    async def body() -> None:
        files = ca.NodeFiles(tmp / "tls")
        await ca.create_ca(files, "cluster1")
        csr = await ca.make_key_and_csr(files)
        files.cert.write_bytes(await ca.sign(files, csr, "m0", "manager", "cluster1", ["127.0.0.1"]))
        async with members(tmp, 1, files) as ms:
            good = EtcdClient([ms[0].cfg.client_url], ca.client_context(files))
            await _ready(good)
            assert (await good.get("/ready")) is not None
            anon_ctx = ssl.create_default_context(cafile=str(files.ca_cert))
            anon_ctx.check_hostname = False
            anon = EtcdClient([ms[0].cfg.client_url], anon_ctx, timeout=2)
            with pytest.raises(StoreUnavailable):
                await anon.get("/ready")
            await good.close()
            await anon.close()

    run(body())
