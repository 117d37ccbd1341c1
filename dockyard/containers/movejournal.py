"""The move journal: what lets the next daemon finish or undo a move cut short by a
`kill -9` of either daemon or of the CLI driving it (issue 15, "Safety").

Owns the two halves of the journal and the one decision between them:

- **source**: `Dockyard.Move` in the container's record = {"Id", "Role": "source", "To",
  "Live", "Checkpoint", "WasRunning"}, written (`leave`) *before* the container is stopped
  or checkpointed, cleared only by `resolve`;
- **target**: the container is created with the label `org.dockyard.move=<move id>`.
  The commit point of a move is the target's start of that container (`commit_arrival`,
  called by `start_container` under the container's lock): it records
  `Dockyard.Move = {"Id", "Role": "target"}` before anything runs. A container carrying
  the label and not committed never starts once the move is aborted here;
- **the decision** is the target's (`abort`): it first writes a tombstone
  `<data-root>/moves/aborted/<id>` (so no later start of that move commits), then looks at
  its containers under their locks: a committed one means "committed" (the tombstone
  goes), else the uncommitted ones are removed and the answer is "aborted".

`resolve` on the source acts on that answer: committed -> remove the source's copy;
aborted -> start it again (from its move checkpoint for a live move) and clear the journal.
At start-up the daemon resolves every source journal in the background, asking the target
itself (`ask_peer`) and retrying while it cannot reach it: until then the container stays
stopped on the source, with its checkpoint; it never runs in two places.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from dockyard import errdefs
from dockyard.containers.checkpoint import checkpoints_root

log = logging.getLogger(__name__)

__all__ = ["MOVE_LABEL", "MoveJournal", "commit_arrival", "tombstone_dir"]

MOVE_LABEL = "org.dockyard.move"
_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
RETRY_SECONDS = 2.0

Record = dict[str, Any]


def tombstone_dir(data_root: Path) -> Path:
    return data_root / "moves" / "aborted"


def _check_id(mid: str) -> str:
    if not _ID.match(mid or ""):
        raise errdefs.InvalidArgument(f"invalid move id: {mid!r}")
    return mid


def commit_arrival(rec: Record, data_root: Path) -> bool:
    """Before a start: a container a move made here becomes this daemon's for good, unless
    the move was aborted here (then it must never start). True when the record changed
    (the caller saves it before starting anything)."""
    labels = rec["Config"].get("Labels") or {}
    mid = labels.get(MOVE_LABEL)
    if not mid or rec["Dockyard"].get("Move"):
        return False
    if (tombstone_dir(data_root) / _check_id(mid)).exists():
        raise errdefs.Conflict(f"move {mid} was undone: container {rec['Id'][:12]} must not start here")
    # the label was the journal's carrier; from here the record is (and a later move of
    # this container to elsewhere must not find a stale label)
    labels.pop(MOVE_LABEL, None)
    rec["Dockyard"]["Move"] = {"Id": mid, "Role": "target"}
    return True


def uncommit_arrival(rec: Record) -> None:
    """A start that failed: the move did not arrive, the source may still take it back."""
    j = rec["Dockyard"].get("Move") or {}
    if j.get("Role") == "target":
        rec["Dockyard"].pop("Move", None)
        rec["Config"].setdefault("Labels", {})[MOVE_LABEL] = j["Id"]


class Containers(Protocol):
    cfg: Any

    def get(self, ref: str) -> Record: ...
    def all(self) -> list[Record]: ...
    def save(self, rec: Record) -> None: ...
    def lock(self, cid: str) -> asyncio.Lock: ...
    def bundle(self, cid: str) -> Path: ...
    def publish(self, rec: Record, action: str, **extra: str) -> None: ...
    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None: ...
    async def start_container(
        self, ref: str, checkpoint: str | None = None, checkpoint_dir: str | None = None
    ) -> None: ...


class MoveJournal:
    def __init__(self, containers: Containers, ask_peer: Callable[[str, str], str]) -> None:
        self.containers = containers
        self.ask_peer = ask_peer  # (target address, move id) -> "committed" | "aborted"
        self.tombstones = tombstone_dir(containers.cfg.data_root)
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- source -------------------------------------------------------------------------

    async def leave(
        self, ref: str, mid: str, to: str, *, live: bool, checkpoint: str, with_volumes: bool
    ) -> None:
        svc = self.containers
        cid = svc.get(ref)["Id"]
        async with svc.lock(cid):
            rec = svc.get(cid)
            now = rec["Dockyard"].get("Move")
            if now and now.get("Role") == "source" and now.get("Id") != mid:
                raise errdefs.Conflict(
                    f"container {rec['Id'][:12]} is being moved to {now.get('To')} (move {now.get('Id')}): "
                    "that move must finish or be undone first"
                )
            rec["Dockyard"]["Move"] = {
                "Id": _check_id(mid), "Role": "source", "To": to, "Live": live, "Checkpoint": checkpoint,
                "WasRunning": bool(rec["State"].get("Running")), "WithVolumes": with_volumes,
            }  # fmt: skip
            svc.save(rec)

    async def resolve(self, ref: str, outcome: str | None = None, attrs: dict[str, str] | None = None) -> str:
        """Finish (the target committed) or undo (it aborted) the source's half of a move;
        without `outcome`, ask the target. Returns "finished" or "undone"."""
        svc = self.containers
        rec = svc.get(ref)
        j = rec["Dockyard"].get("Move") or {}
        if j.get("Role") != "source":
            raise errdefs.Conflict(f"container {rec['Id'][:12]} has no move in progress")
        if outcome is None:
            outcome = await asyncio.to_thread(self.ask_peer, str(j["To"]), str(j["Id"]))
        if outcome not in ("committed", "aborted"):
            raise errdefs.InvalidArgument(f"invalid move outcome: {outcome!r}")
        extra = {"to": str(j["To"]), "moveID": str(j["Id"]), "live": str(bool(j.get("Live"))).lower(),
                 **(attrs or {})}  # fmt: skip
        if outcome == "committed":
            svc.publish(rec, "move", outcome="moved", **extra)
            await svc.remove(rec["Id"], force=True, volumes=bool(j.get("WithVolumes")))
            return "finished"
        # undo: run it here again first, then forget the journal (a crash between the two
        # resolves again, and a start of a running container is a no-op)
        cp = str(j.get("Checkpoint") or "")
        cp_dir = checkpoints_root(svc.bundle(rec["Id"]), None) / cp if cp else None
        if j.get("WasRunning") and not rec["State"].get("Running"):
            restorable = cp_dir is not None and (cp_dir / "config.json").is_file()
            try:
                await svc.start_container(rec["Id"], cp if restorable else None)
            except errdefs.NotModified:
                pass
        if cp_dir is not None:
            await asyncio.to_thread(shutil.rmtree, cp_dir, True)
        async with svc.lock(rec["Id"]):
            now = svc.get(rec["Id"])
            now["Dockyard"].pop("Move", None)
            svc.save(now)
        svc.publish(now, "move", outcome="undone", **extra)
        return "undone"

    def start_recovery(self) -> None:
        """Resolve, in the background, every move the previous daemon left on the source."""
        pending = [
            r["Id"]
            for r in self.containers.all()
            if (r["Dockyard"].get("Move") or {}).get("Role") == "source"
        ]
        if pending:
            self._spawn(pending)

    def settle_later(self, ref: str) -> None:
        """The CLI could not reach the target: keep asking it from here until it answers."""
        rec = self.containers.get(ref)
        if (rec["Dockyard"].get("Move") or {}).get("Role") != "source":
            raise errdefs.Conflict(f"container {rec['Id'][:12]} has no move in progress")
        self._spawn([rec["Id"]])

    def _spawn(self, pending: list[str]) -> None:
        task = asyncio.get_running_loop().create_task(self._recover(pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recover(self, pending: list[str]) -> None:
        while pending:
            for cid in list(pending):
                try:
                    result = await self.resolve(cid)
                    log.warning("container %s: move cut short by a restart %s", cid[:12], result)
                    pending.remove(cid)
                except (errdefs.NotFound, errdefs.Conflict):
                    pending.remove(cid)  # gone, or resolved by the CLI meanwhile
                except (errdefs.DockyardError, OSError) as err:  # the target unreachable: it stays stopped here
                    log.warning("container %s: cannot resolve its move yet: %s", cid[:12], err)
            if pending:
                await asyncio.sleep(RETRY_SECONDS)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # ---- target -------------------------------------------------------------------------

    async def abort(self, mid: str) -> dict[str, str]:
        """The decision: "committed" if a container of move `mid` started here, else every
        uncommitted one is removed and no later start of that move can commit."""
        svc = self.containers
        _check_id(mid)
        self.tombstones.mkdir(parents=True, exist_ok=True)
        stone = self.tombstones / mid
        fd = os.open(stone, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        ours = [
            r["Id"] for r in svc.all()
            if (r["Config"].get("Labels") or {}).get(MOVE_LABEL) == mid
            or (r["Dockyard"].get("Move") or {}).get("Id") == mid
        ]  # fmt: skip
        doomed = []
        for cid in ours:
            async with svc.lock(cid):  # a start in flight finishes (committed) or fails first
                rec = svc.get(cid)
                if (rec["Dockyard"].get("Move") or {}).get("Role") == "target":
                    stone.unlink(missing_ok=True)
                    return {"Outcome": "committed", "Id": cid}
            doomed.append(cid)
        for cid in doomed:
            await svc.remove(cid, force=True, volumes=True)
        return {"Outcome": "aborted"}

    async def arrived(self, mid: str, attrs: dict[str, str]) -> None:
        """The CLI saw the move through: commit it here if no start did (a container that
        was not running), and publish the target's `move` event with the CLI's figures."""
        svc = self.containers
        _check_id(mid)
        for r in svc.all():
            labelled = (r["Config"].get("Labels") or {}).get(MOVE_LABEL) == mid
            if not labelled and (r["Dockyard"].get("Move") or {}).get("Id") != mid:
                continue
            async with svc.lock(r["Id"]):
                rec = svc.get(r["Id"])
                if commit_arrival(rec, svc.cfg.data_root):
                    svc.save(rec)
            svc.publish(rec, "move", outcome="arrived", moveID=mid, **attrs)
            return
        raise errdefs.NotFound(f"no container arrived here by move {mid}")
