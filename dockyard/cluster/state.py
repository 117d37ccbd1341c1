"""The cluster's shared state in etcd: the key layout and typed access to each object.

Owns the meaning of every key under `/dockyard/`. Objects are Docker-shaped JSON; an
object's `Version.Index` is its key's etcd mod_revision, so `?version=N` on an update is a
compare-and-swap on that revision, and a stale version is refused.

```
/dockyard/
  cluster                 the swarm: ID, Spec, CreatedAt, join-token secrets, CA digest
  nodes/<id>              a node: Spec (role, availability, labels), Description, Addr
  alive/<id>              "1" under the node's lease: present = ready, gone = down
  leader                  the scheduler leader's node ID, under its lease
  services/<id>           a service: Spec, PreviousSpec, UpdateStatus, CreatedAt
  tasks/<id>              a task: ServiceID, Slot, NodeID, DesiredState, Spec (scheduler-owned)
  status/<id>             a task's Status (written only by the agent of the task's node)
  secrets/<id>            a secret: Spec without Data, and the data sealed with the data key
  configs/<id>            a config: Spec, Data (plain, as Docker keeps configs)
```

Tasks are split in two keys so that the scheduler and the agents never write the same key:
no lost update between them, and no compare-and-swap loop needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dockyard import errdefs
from dockyard.cluster.kv import KV, EtcdClient

ROOT = "/dockyard/"
CLUSTER = ROOT + "cluster"
LEADER = ROOT + "leader"
KINDS = ("nodes", "alive", "services", "tasks", "status", "secrets", "configs")


def key(kind: str, oid: str) -> str:
    return f"{ROOT}{kind}/{oid}"


def prefix(kind: str) -> str:
    return f"{ROOT}{kind}/"


@dataclass(frozen=True)
class Obj:
    id: str
    data: dict[str, Any]
    revision: int  # the key's mod_revision: Version.Index


def _obj(kv: KV) -> Obj:
    data = json.loads(kv.value)
    data.setdefault("Version", {})["Index"] = kv.mod_revision
    return Obj(kv.key.rsplit("/", 1)[1], data, kv.mod_revision)


def dump(data: dict[str, Any]) -> bytes:
    d = {k: v for k, v in data.items() if k != "Version"}
    return json.dumps(d, separators=(",", ":")).encode()


class ClusterState:
    """Typed reads and writes of the cluster's objects over one EtcdClient."""

    def __init__(self, kv: EtcdClient) -> None:
        self.kv = kv

    async def get(self, kind: str, oid: str) -> Obj | None:
        kv = await self.kv.get(key(kind, oid))
        return _obj(kv) if kv else None

    async def list(self, kind: str) -> list[Obj]:
        kvs, _ = await self.kv.get_prefix(prefix(kind))
        return [_obj(kv) for kv in kvs]

    async def put(self, kind: str, oid: str, data: dict[str, Any], lease: int = 0) -> int:
        return await self.kv.put(key(kind, oid), dump(data), lease)

    async def create(self, kind: str, oid: str, data: dict[str, Any]) -> None:
        if not await self.kv.create(key(kind, oid), dump(data)):
            raise errdefs.AlreadyExists(f"{kind[:-1]} {oid} already exists")

    async def update(self, kind: str, oid: str, data: dict[str, Any], version: int) -> None:
        """Write data only if the object is still at version (its mod_revision)."""
        if not await self.kv.cas(key(kind, oid), dump(data), version):
            raise errdefs.Conflict(
                f"update out of sequence: {kind[:-1]} {oid} changed since version {version}; inspect it and retry"
            )

    async def delete(self, kind: str, oid: str) -> bool:
        return await self.kv.delete(key(kind, oid)) > 0

    async def cluster(self) -> Obj | None:
        kv = await self.kv.get(CLUSTER)
        return _obj(kv) if kv else None
