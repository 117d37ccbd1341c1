"""Host network state repaired when something outside the daemon changed it: owns noticing a
deleted bridge, nft table or container veth and rebuilding it.

Two ways in: `NetworkService._add_endpoint` asks `repair_bridge` before plugging a container
in (so the next `run` works at once after an admin's `ip link del dockyard0`), and a watcher
task (`watch`, every HEAL_INTERVAL_S) finds what no start would touch: the nft table
flushed or deleted (`nft delete table`), the veth of a running container deleted (its
endpoint is re-plugged with the same address and MAC), a bridge with no starts coming.
A veth is re-plugged only when it was missing at two passes in a row: an endpoint that is
being plugged in or taken out at this moment is in the store a few ms before its veth.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from dockyard.network import bridge
from dockyard.network.driver import EndpointSpec
from dockyard.network.portmap import table_exists

log = logging.getLogger(__name__)

HEAL_INTERVAL_S = 3.0


async def repair_bridge(svc: Any, doc: dict[str, Any]) -> bool:
    """The network's bridge again if it is gone; True when it was rebuilt (rules are then
    re-applied at the next `_apply_rules`)."""
    drv = svc.drivers.get(doc["Driver"])
    repair = getattr(drv, "repair", None)
    if repair is None:
        return False
    eps = (doc.get("Dockyard") or {}).get("Endpoints") or {}
    rebuilt = bool(await asyncio.to_thread(repair, svc._net_spec(doc), [ep["HostIf"] for ep in eps.values()]))
    if rebuilt:
        log.warning("network %s: bridge %s was deleted outside the daemon: re-created", doc["Name"],
                    doc["Dockyard"]["Bridge"])  # fmt: skip
        svc._rules_applied = None
    return rebuilt


class Healer:
    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self._missing: set[str] = set()  # host ends missing at the last pass
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.watch())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(HEAL_INTERVAL_S)
            try:
                await self.heal()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - the next pass tries again; the daemon goes on
                log.warning("checking the host's network state: %s", err)

    async def heal(self) -> None:
        svc = self.svc
        missing: set[str] = set()
        for doc in svc.all():
            if doc["Driver"] != "bridge" or doc["Driver"] not in svc.drivers:
                continue
            await repair_bridge(svc, doc)
            for cid, ep in list((doc["Dockyard"].get("Endpoints") or {}).items()):
                pid = int(ep.get("Pid") or 0)
                if not pid or not _alive(pid) or await asyncio.to_thread(bridge.link_exists, ep["HostIf"]):
                    continue
                missing.add(ep["HostIf"])
                if ep["HostIf"] in self._missing:
                    await self._replug(doc, cid, ep)
        self._missing = missing
        if not await table_exists(svc.table):
            log.warning("nft table %s was deleted outside the daemon: re-applied", svc.table)
            svc._rules_applied = None
        await svc._apply_rules()

    async def _replug(self, doc: dict[str, Any], cid: str, ep: dict[str, Any]) -> None:
        """A running container's veth was deleted: plug it in again as it was."""
        svc = self.svc
        addr, prefix = ep["IPv4Address"].split("/")
        sub = svc._subnet(doc)
        rec = svc.store.containers.get(cid) or {}
        default = (rec.get("NetworkSettings") or {}).get("Gateway") == str(sub.gateway) and not doc.get("Internal")
        spec = EndpointSpec(
            netns=ep["Netns"], host_if=ep["HostIf"], address=addr, prefixlen=int(prefix), mac=ep["MacAddress"],
            gateway=str(sub.gateway) if default else None, mtu=int(doc["Dockyard"].get("MTU") or 1500),
        )  # fmt: skip
        await asyncio.to_thread(svc._driver(doc).join, svc._net_spec(doc), spec)
        log.warning("container %s: veth %s on %s was deleted outside the daemon: re-plugged", cid[:12],
                    ep["HostIf"], doc["Name"])  # fmt: skip


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}/ns/net")
