"""Overlay networks in swarm mode: the overlay driver's peer tables in the swarm's own etcd.

Owns the link between membership and the overlay data plane (`network/overlay_*.py`, built
on the `overlay` branch): `SwarmPeerSource` is the overlay's `EtcdPeerSource` with its
gateway calls sent through the swarm's store client (mutual TLS with the node's
certificate, failover across the managers' members, watches resumed), and `attach()` /
`detach()` turn the overlay on in the node's network service when the node joins a swarm
and off when it leaves. The overlay's keys stay its own (`/dockyard/overlay/...`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

from dockyard.cluster.kv import EtcdClient
from dockyard.cluster.kv import StoreUnavailable as KVUnavailable
from dockyard.network.overlay_store import PREFIX, EtcdPeerSource, Snapshot, StoreUnavailable, parse_snapshot

log = logging.getLogger(__name__)


class SwarmPeerSource(EtcdPeerSource):
    def __init__(self, kv: EtcdClient) -> None:
        super().__init__("swarm://", retry_s=0.5)
        self.kv = kv

    def __repr__(self) -> str:
        return f"<SwarmPeerSource {self.kv!r}>"

    async def _call(self, path: str, body: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
        try:
            return await self.kv.call(path, body, timeout)
        except KVUnavailable as err:
            raise StoreUnavailable(str(err)) from err

    async def watch(self) -> AsyncIterator[Snapshot]:
        """A snapshot now and after every change (level-triggered, as the overlay expects)."""
        kvs, rev = await self.read()
        yield parse_snapshot(kvs)
        async for _ev in self.kv.watch_prefix(PREFIX, rev + 1):
            try:
                yield parse_snapshot((await self.read())[0])
            except StoreUnavailable as err:
                log.debug("overlay snapshot: %s", err)

    async def close(self) -> None:
        pass  # the store client is the swarm's


async def attach(networks: Any, cfg: Any, kv: EtcdClient, addr: str) -> None:
    """Turn the overlay on in the network service (`networks`), VXLAN from this node's
    advertise address."""
    if networks is None or getattr(networks, "overlay", None) is not None:
        return
    from dockyard.network.overlay_service import OverlayNetworks

    ov_cfg = dataclasses.replace(cfg, cluster_advertise=addr, cluster_store="swarm")
    networks.overlay = OverlayNetworks(networks, ov_cfg, SwarmPeerSource(kv))
    await networks.overlay.start()


async def detach(networks: Any) -> None:
    """The node left: the overlay stops; its local network copies go with their sandboxes."""
    ov = getattr(networks, "overlay", None)
    if ov is None:
        return
    await ov.close()
    networks.overlay = None
    await networks.forget_overlays()
