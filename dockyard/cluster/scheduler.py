"""The scheduler: turns services into tasks on nodes. Runs on the elected manager only.

Owns every scheduler decision, as a pure planner (`plan(snapshot, now) -> ops`) over a
snapshot of the store, and a thin loop (`run`) that reads the snapshot, plans and writes.
The planner never blocks and never reads the clock itself, so tests and the loop agree.

Rules (Docker's, where it has them):
- Replicated services have slots 1..Replicas; global services one slot per eligible node
  (alive, availability active, constraints met). A slot with no task wanting to run gets a
  new task, unless the restart policy says no (condition none / on-failure after a clean
  exit / MaxAttempts reached within Window / Delay not yet passed). Tasks that ended
  because their node died, was drained or removed, or for an update, are replaced at once.
- Placement: constraints filter nodes; resource reservations must fit what the node has
  left; then spread preferences, then fewest tasks of this service, then fewest tasks.
  No node fits: the task waits `pending` with the reason.
- A task whose node is down, drained or gone, or no longer satisfies constraints, is set
  to desired `shutdown`; its node's agent stops the container if it ever returns.
- Rolling updates: out-of-date tasks are replaced `Parallelism` at a time (0 = all), each
  batch after the previous one has run for `Monitor` and `Delay` has passed; stop-first
  waits for the old task to end, start-first starts the new one first. A new task failing
  triggers `FailureAction`: pause, continue, or rollback (the previous spec, rolled out
  with `RollbackConfig`).
- History: `TaskHistoryRetentionLimit` ended tasks are kept per slot, older are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dockyard.cluster import specs, state, tokens
from dockyard.cluster.kv import StoreUnavailable
from dockyard.timefmt import format_ts

log = logging.getLogger(__name__)

TERMINAL = {"complete", "shutdown", "failed", "rejected", "remove", "orphaned"}
FAILED = {"failed", "rejected"}
IMMEDIATE = {"node down", "node removed", "drain", "constraints", "update"}


@dataclass
class Snapshot:
    services: dict[str, state.Obj]
    tasks: dict[str, dict[str, Any]]
    statuses: dict[str, dict[str, Any]]
    nodes: dict[str, dict[str, Any]]
    alive: set[str]
    retention: int = 5


@dataclass
class Ops:
    put_tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    delete_tasks: set[str] = field(default_factory=set)
    delete_statuses: set[str] = field(default_factory=set)
    services: dict[str, tuple[dict[str, Any], int]] = field(default_factory=dict)  # id -> (data, revision)

    def empty(self) -> bool:
        return not (self.put_tasks or self.delete_tasks or self.delete_statuses or self.services)


def _state(snap: Snapshot, t: dict[str, Any]) -> str:
    st = snap.statuses.get(t["ID"])
    return str((st or t.get("InitialStatus") or {}).get("State", "new"))


def _status_ts(snap: Snapshot, t: dict[str, Any]) -> float:
    return float((snap.statuses.get(t["ID"]) or {}).get("Dockyard", {}).get("Since", 0) or 0)


def _meta(t: dict[str, Any]) -> dict[str, Any]:
    m: dict[str, Any] = t.setdefault("Dockyard", {})
    return m


def _reservations(tt: dict[str, Any]) -> tuple[int, int]:
    r = (tt.get("Resources") or {}).get("Reservations") or {}
    return int(r.get("NanoCPUs") or 0), int(r.get("MemoryBytes") or 0)


class _Planner:
    def __init__(self, snap: Snapshot, now: float) -> None:
        self.snap, self.now = snap, now
        self.ops = Ops()
        self.tasks = {tid: dict(t) for tid, t in snap.tasks.items()}
        for t in self.tasks.values():
            t["Dockyard"] = dict(t.get("Dockyard") or {})
        self.eligible = [n for nid, n in sorted(snap.nodes.items())
                         if nid in snap.alive and n["Spec"].get("Availability") == "active"]  # fmt: skip

    # -- helpers --------------------------------------------------------------------------

    def _put(self, t: dict[str, Any]) -> None:
        t["UpdatedAt"] = format_ts(self.now)
        self.ops.put_tasks[t["ID"]] = t

    def _stop(self, t: dict[str, Any], reason: str, desired: str = "shutdown") -> None:
        t["DesiredState"] = desired
        _meta(t)["Reason"] = reason
        _meta(t)["EndedAt"] = self.now
        self._put(t)

    def live(self, sid: str) -> list[dict[str, Any]]:
        return [t for t in self.tasks.values() if t["ServiceID"] == sid and t["DesiredState"] == "running"]

    def _load(self) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
        count: dict[str, int] = {}
        used: dict[str, tuple[int, int]] = {}
        for t in self.tasks.values():
            if t["DesiredState"] == "running" and t.get("NodeID"):
                n = t["NodeID"]
                count[n] = count.get(n, 0) + 1
                c, m = _reservations(t["Spec"])
                uc, um = used.get(n, (0, 0))
                used[n] = (uc + c, um + m)
        return count, used

    def pick(
        self, svc: dict[str, Any], tt: dict[str, Any], only: str | None = None
    ) -> tuple[str | None, str]:
        placement = tt.get("Placement") or {}
        cons = placement.get("Constraints") or []
        cands = [n for n in self.eligible if specs.satisfies(n, cons) and (only is None or n["ID"] == only)]
        if not cands:
            return (
                None,
                f"no suitable node ({len(self.eligible)} nodes not available for new tasks or "
                "not matching the constraints)",
            )
        count, used = self._load()
        want_c, want_m = _reservations(tt)
        if want_c or want_m:

            def fits(n: dict[str, Any]) -> bool:
                res = (n.get("Description") or {}).get("Resources") or {}
                uc, um = used.get(n["ID"], (0, 0))
                return uc + want_c <= int(res.get("NanoCPUs") or 0) and um + want_m <= int(
                    res.get("MemoryBytes") or 0
                )

            fit = [n for n in cands if fits(n)]
            if not fit:
                return None, f"no suitable node (insufficient resources on {len(cands)} nodes)"
            cands = fit
        svc_count: dict[str, int] = {}
        for t in self.live(svc["ID"]):
            if t.get("NodeID"):
                svc_count[t["NodeID"]] = svc_count.get(t["NodeID"], 0) + 1
        max_rep = int(placement.get("MaxReplicas") or 0)
        if max_rep:
            cands = [n for n in cands if svc_count.get(n["ID"], 0) < max_rep]
            if not cands:
                return None, "no suitable node (max replicas per node limit exceed)"
        prefs = [p["Spread"]["SpreadDescriptor"] for p in placement.get("Preferences") or []]

        def group_load(n: dict[str, Any], desc: str) -> int:
            v = specs.node_attr(n, desc)
            return sum(c for nid, c in svc_count.items()
                       if nid in self.snap.nodes and specs.node_attr(self.snap.nodes[nid], desc) == v)  # fmt: skip

        cands.sort(key=lambda n: (*[group_load(n, d) for d in prefs], svc_count.get(n["ID"], 0),
                                  count.get(n["ID"], 0), n["ID"]))  # fmt: skip
        return cands[0]["ID"], ""

    def new_task(self, svc: state.Obj, slot: int, node: str | None = None) -> None:
        d = svc.data
        tt = d["Spec"]["TaskTemplate"]
        tid = tokens.new_id()
        nid, why = self.pick(d, tt, only=node)
        ts = format_ts(self.now)
        initial = ({"Timestamp": ts, "State": "assigned", "Message": "scheduler assigned task to node"} if nid else
                   {"Timestamp": ts, "State": "pending", "Message": "pending task scheduling", "Err": why})  # fmt: skip
        t = {
            "ID": tid, "CreatedAt": ts, "UpdatedAt": ts, "Labels": {}, "Spec": tt, "ServiceID": svc.id,
            "Slot": slot, "NodeID": nid or "", "DesiredState": "running", "InitialStatus": initial,
            "Endpoint": {"Spec": d["Spec"].get("EndpointSpec") or {"Mode": "vip"},
                         "Ports": (d["Spec"].get("EndpointSpec") or {}).get("Ports") or []},
            "Dockyard": {"ServiceName": d["Spec"]["Name"], "SpecHash": specs.template_hash(tt), "Created": self.now,
                         "Reason": ""},
        }  # fmt: skip
        self.tasks[tid] = t
        self._put(t)

    def restart_allowed(self, svc: dict[str, Any], slot_tasks: list[dict[str, Any]]) -> bool:
        if not slot_tasks:
            return True
        last = max(slot_tasks, key=lambda t: float(_meta(t).get("Created", 0)))
        reason = _meta(last).get("Reason", "")
        st = _state(self.snap, last)
        node_up = last.get("NodeID") in self.snap.alive
        if reason in IMMEDIATE:
            # stop-first: an old task still stopping (on a live node) holds its slot
            return not (reason == "update" and st not in TERMINAL and node_up)
        rp = svc["Spec"]["TaskTemplate"].get("RestartPolicy") or specs.DEFAULT_RESTART
        cond = rp.get("Condition", "any")
        if cond == "none":
            return False
        if cond == "on-failure" and st == "complete":
            return False
        max_attempts = int(rp.get("MaxAttempts") or 0)
        if max_attempts:
            window = int(rp.get("Window") or 0) / 1e9
            ended = [t for t in slot_tasks if _meta(t).get("Reason") == "ended"
                     and (not window or self.now - float(_meta(t).get("EndedAt", 0)) <= window)]  # fmt: skip
            if len(ended) >= max_attempts:
                return False
        raw_delay = rp.get("Delay")
        delay = int(raw_delay if raw_delay is not None else specs.DEFAULT_RESTART["Delay"]) / 1e9
        return self.now - float(_meta(last).get("EndedAt", 0)) >= delay

    # -- the passes -----------------------------------------------------------------------

    def shutdowns(self) -> None:
        for t in list(self.tasks.values()):
            if t["DesiredState"] != "running":
                continue
            svc = self.snap.services.get(t["ServiceID"])
            if svc is None:
                self._stop(t, "service removed", "remove")
                continue
            nid = t.get("NodeID")
            if nid:
                node = self.snap.nodes.get(nid)
                if node is None:
                    self._stop(t, "node removed")
                    continue
                if nid not in self.snap.alive:
                    self._stop(t, "node down")
                    continue
                if node["Spec"].get("Availability") == "drain":
                    self._stop(t, "drain")
                    continue
                if not specs.satisfies(node, (t["Spec"].get("Placement") or {}).get("Constraints") or []):
                    self._stop(t, "constraints")
                    continue
            if _state(self.snap, t) in TERMINAL:
                self._stop(t, "ended")

    def assign_pending(self) -> None:
        for t in self.tasks.values():
            if t["DesiredState"] == "running" and not t.get("NodeID"):
                svc = self.snap.services.get(t["ServiceID"])
                if svc is None:
                    continue
                nid, _why = self.pick(svc.data, t["Spec"])
                if nid:
                    t["NodeID"] = nid
                    t["InitialStatus"] = {"Timestamp": format_ts(self.now), "State": "assigned",
                                          "Message": "scheduler assigned task to node"}  # fmt: skip
                    self._put(t)

    def fill(self, svc: state.Obj) -> None:
        d = svc.data
        mode = d["Spec"]["Mode"]
        all_tasks = [t for t in self.tasks.values() if t["ServiceID"] == svc.id]
        if "Replicated" in mode:
            n = int(mode["Replicated"]["Replicas"])
            live = self.live(svc.id)
            for t in live:
                if int(t.get("Slot") or 0) > n:
                    self._stop(t, "scale down")
            for slot in range(1, n + 1):
                if any(int(t.get("Slot") or 0) == slot for t in self.live(svc.id)):
                    continue
                if self.restart_allowed(d, [t for t in all_tasks if int(t.get("Slot") or 0) == slot]):
                    self.new_task(svc, slot)
        else:
            cons = (d["Spec"]["TaskTemplate"].get("Placement") or {}).get("Constraints") or []
            for node in self.eligible:
                if not specs.satisfies(node, cons):
                    continue
                if any(t.get("NodeID") == node["ID"] for t in self.live(svc.id)):
                    continue
                if self.restart_allowed(d, [t for t in all_tasks if t.get("NodeID") == node["ID"]]):
                    self.new_task(svc, 0, node=node["ID"])

    def update(self, svc: state.Obj) -> None:
        """One step of a rolling update (or rollback) of svc, if it has out-of-date tasks."""
        d = dict(svc.data)
        spec = d["Spec"]
        h = specs.template_hash(spec["TaskTemplate"])
        us = dict(d.get("UpdateStatus") or {})
        ustate = us.get("State", "")
        rolling_back = ustate.startswith("rollback")
        cfg = spec.get("RollbackConfig" if rolling_back else "UpdateConfig") or specs.DEFAULT_UPDATE
        meta = dict(d.get("Dockyard") or {})
        live = self.live(svc.id)
        outdated = sorted(
            [t for t in live if _meta(t).get("SpecHash") != h], key=lambda t: int(t.get("Slot") or 0)
        )
        if ustate in ("paused", "rollback_paused"):
            return
        if not outdated and ustate not in ("updating", "rollback_started"):
            return
        started = float(meta.get("UpdateStarted", 0))
        if ustate in ("updating", "rollback_started") and not started:
            meta["UpdateStarted"] = started = self.now
        if ustate not in ("updating", "rollback_started"):
            us = {"State": "updating", "StartedAt": format_ts(self.now), "Message": "update in progress"}
            ustate = "updating"
            meta["UpdateStarted"] = started = self.now
        failed = [t for t in self.tasks.values() if t["ServiceID"] == svc.id and _meta(t).get("SpecHash") == h
                  and float(_meta(t).get("Created", 0)) >= started and _state(self.snap, t) in FAILED]  # fmt: skip
        action = cfg.get("FailureAction", "pause")
        if failed and action != "continue":
            culprit = failed[0]["ID"]
            if action == "rollback" and not rolling_back and d.get("PreviousSpec"):
                d["Spec"], d["PreviousSpec"] = d["PreviousSpec"], spec
                us = {"State": "rollback_started", "StartedAt": format_ts(self.now),
                      "Message": f"update rolled back due to failure or early termination of task {culprit}"}  # fmt: skip
                meta = {"UpdateStarted": self.now}
            else:
                us = {**us, "State": "rollback_paused" if rolling_back else "paused",
                      "Message": f"update paused due to failure or early termination of task {culprit}"}  # fmt: skip
            d["UpdateStatus"], d["Dockyard"] = us, meta
            self.ops.services[svc.id] = (d, svc.revision)
            return
        monitor = int(cfg.get("Monitor") or 0) / 1e9
        fresh = [t for t in live if _meta(t).get("SpecHash") == h]
        inflight = [t for t in fresh if not (_state(self.snap, t) == "running"
                                             and self.now - _status_ts(self.snap, t) >= monitor)]  # fmt: skip
        stopping = [t for t in self.tasks.values() if t["ServiceID"] == svc.id and _meta(t).get("Reason") == "update"
                    and _state(self.snap, t) not in TERMINAL and t.get("NodeID") in self.snap.alive
                    and t["DesiredState"] != "running"]  # fmt: skip
        # start-first: an old task leaves once its slot's new task has settled
        if cfg.get("Order") == "start-first":
            for t in outdated:
                if any(
                    int(f.get("Slot") or 0) == int(t.get("Slot") or 0) and f not in inflight for f in fresh
                ):
                    self._stop(t, "update")
            outdated = [t for t in outdated if t["DesiredState"] == "running"]
        if not outdated:
            if not inflight and not stopping:
                us = {"State": "rollback_completed" if rolling_back else "completed", "StartedAt": us.get("StartedAt"),
                      "CompletedAt": format_ts(self.now),
                      "Message": "rollback completed" if rolling_back else "update completed"}  # fmt: skip
                meta.pop("UpdateStarted", None)
                d["UpdateStatus"], d["Dockyard"] = us, meta
                self.ops.services[svc.id] = (d, svc.revision)
            elif d.get("UpdateStatus") != us:
                d["UpdateStatus"], d["Dockyard"] = us, meta
                self.ops.services[svc.id] = (d, svc.revision)
            return
        parallelism = int(cfg.get("Parallelism") or 0) or len(outdated)
        busy = len(inflight) + len(stopping)
        delay = int(cfg.get("Delay") or 0) / 1e9
        wait = busy >= parallelism
        if not wait and delay and meta.get("LastBatch") is not None:
            # with a delay, batches do not overlap: the previous one settles, then the delay runs
            if busy:
                wait = True
            else:
                idle = float(meta.setdefault("IdleSince", self.now))
                wait = self.now - idle < delay
        if wait:
            if d.get("UpdateStatus") != us or d.get("Dockyard") != meta:
                d["UpdateStatus"], d["Dockyard"] = us, meta
                self.ops.services[svc.id] = (d, svc.revision)
            return
        meta.pop("IdleSince", None)
        batch = outdated[: parallelism - busy]
        for t in batch:
            if cfg.get("Order") == "start-first":
                if not any(int(f.get("Slot") or 0) == int(t.get("Slot") or 0) for f in fresh):
                    if "Replicated" in spec["Mode"]:
                        self.new_task(svc, int(t.get("Slot") or 0))
                    else:
                        self.new_task(svc, 0, node=t.get("NodeID"))
            else:
                self._stop(t, "update")
        meta["LastBatch"] = self.now
        d["UpdateStatus"], d["Dockyard"] = us, meta
        self.ops.services[svc.id] = (d, svc.revision)

    def collect(self) -> None:
        """Delete tasks beyond the history limit, and tasks of removed services once ended."""
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for t in self.tasks.values():
            if t["DesiredState"] == "running":
                continue
            ended = _state(self.snap, t) in TERMINAL or t.get("NodeID") not in self.snap.alive
            if t["DesiredState"] == "remove":
                if ended:
                    self.ops.delete_tasks.add(t["ID"])
                continue
            if ended:
                groups.setdefault((t["ServiceID"], str(t.get("Slot") or t.get("NodeID"))), []).append(t)
        for group in groups.values():
            group.sort(key=lambda t: float(_meta(t).get("Created", 0)), reverse=True)
            for t in group[self.snap.retention :]:
                self.ops.delete_tasks.add(t["ID"])
        for tid in self.ops.delete_tasks:
            self.ops.put_tasks.pop(tid, None)
        self.ops.delete_statuses = {sid for sid in self.snap.statuses if sid not in self.snap.tasks}


def plan(snap: Snapshot, now: float) -> Ops:
    p = _Planner(snap, now)
    p.shutdowns()
    p.assign_pending()
    for svc in sorted(snap.services.values(), key=lambda s: s.id):
        p.update(svc)
        if svc.id in p.ops.services:  # a rollback swapped the spec: fill with the new one next pass
            svc = state.Obj(svc.id, p.ops.services[svc.id][0], svc.revision)
        p.fill(svc)
    p.collect()
    return p.ops


async def read_snapshot(s: state.ClusterState) -> Snapshot:
    services, tasks, statuses, nodes = await asyncio.gather(
        s.list("services"), s.list("tasks"), s.list("status"), s.list("nodes")
    )
    alive_kvs, _ = await s.kv.get_prefix(state.prefix("alive"))
    cluster = await s.cluster()
    retention = 5
    if cluster is not None:
        retention = int(((cluster.data.get("Spec") or {}).get("Orchestration") or {}).get("TaskHistoryRetentionLimit")
                        or 5)  # fmt: skip
    return Snapshot(
        services={o.id: o for o in services}, tasks={o.id: o.data for o in tasks},
        statuses={o.id: o.data for o in statuses}, nodes={o.id: o.data for o in nodes},
        alive={kv.key.rsplit("/", 1)[1] for kv in alive_kvs}, retention=retention,
    )  # fmt: skip


async def apply(s: state.ClusterState, ops: Ops) -> None:
    sem = asyncio.Semaphore(16)

    async def one(coro: Any) -> None:
        async with sem:
            await coro

    work: list[Any] = [s.put("tasks", tid, t) for tid, t in ops.put_tasks.items()]
    work += [s.delete("tasks", tid) for tid in ops.delete_tasks]
    work += [s.delete("status", tid) for tid in ops.delete_tasks | ops.delete_statuses]
    work += [_cas_service(s, sid, d, rev) for sid, (d, rev) in ops.services.items()]
    await asyncio.gather(*(one(w) for w in work))


async def _cas_service(s: state.ClusterState, sid: str, d: dict[str, Any], rev: int) -> None:
    with contextlib.suppress(Exception):  # the user changed it meanwhile: the next pass replans
        await s.update("services", sid, d, rev)


async def run(s: state.ClusterState, wake: asyncio.Event, tick: float = 0.5) -> None:
    """The leader's loop: plan and apply on every change and every tick."""
    log.info("scheduler started")
    while True:
        try:
            snap = await read_snapshot(s)
            ops = plan(snap, time.time())
            if not ops.empty():
                log.debug("scheduler: %d task writes, %d deletes, %d services", len(ops.put_tasks),
                          len(ops.delete_tasks), len(ops.services))  # fmt: skip
                await apply(s, ops)
        except StoreUnavailable as err:
            log.debug("scheduler: %s", err)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("scheduler pass failed")
        wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(tick):
                await wake.wait()
        await asyncio.sleep(0.02)  # gather a burst of changes into one pass


async def watch_changes(s: state.ClusterState, wake: asyncio.Event, prefixes: Iterable[str] = ("",)) -> None:
    """Wake the loop on any change under /dockyard/ (resumed from the last revision)."""
    _, rev = await s.kv.get_prefix(state.LEADER)
    async for _ev in s.kv.watch_prefix(state.ROOT, rev + 1):
        wake.set()
