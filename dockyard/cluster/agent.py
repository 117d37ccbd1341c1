"""The node agent: makes this node's containers match the tasks assigned to it.

Owns the task → container lifecycle on one node and the task status keys
(`/dockyard/status/<task>`) of this node's tasks: nobody else writes them. It reads its
tasks from the store, and acts through `TaskRuntime`, a narrow view of the node's own
container service (create, start, stop, remove, list): it never reaches into its privates.

A pass (on every store change, container event, and every half second):
- a task that should run and has no container: create it (name `<service>.<slot>.<task>`,
  swarm labels), mount its secrets and configs, start it; status `running` (or `rejected`
  if it cannot be created, `failed` if it cannot start);
- a task whose container exited: `complete` (exit 0) or `failed` with the exit code;
- a task that should stop (shutdown / remove): stop and remove the container, `shutdown`;
- a container carrying a task label whose task is gone, or assigned elsewhere (a node
  coming back after its tasks were rescheduled), is stopped and removed.
When the store cannot be read (no quorum) the agent does nothing: running tasks keep
running, and nothing is stopped on a guess.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Protocol

from dockyard import errdefs
from dockyard.cluster import seal, specs, state
from dockyard.cluster.kv import StoreUnavailable
from dockyard.timefmt import format_ts

log = logging.getLogger(__name__)

TASK_LABEL = "com.docker.swarm.task.id"
TERMINAL = {"complete", "shutdown", "failed", "rejected", "remove", "orphaned"}


class TaskRuntime(Protocol):
    """What the agent needs of the node's container service."""

    async def create(self, body: dict[str, Any], name: str | None, platform: str | None = None
                     ) -> tuple[str, list[str]]: ...  # fmt: skip

    async def start_container(self, ref: str) -> None: ...

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None: ...

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None: ...

    def all(self) -> list[dict[str, Any]]: ...


class Agent:
    def __init__(self, node_id: str, store: state.ClusterState, runtime: TaskRuntime, data_key: bytes,
                 secrets_dir: Path) -> None:  # fmt: skip
        self.node_id = node_id
        self.store = store
        self.runtime = runtime
        self.data_key = data_key
        self.secrets_dir = secrets_dir
        self.wake = asyncio.Event()
        self._busy: set[str] = set()
        self._sem = asyncio.Semaphore(8)
        self._jobs: set[asyncio.Task[None]] = set()
        self._known: dict[str, dict[str, Any]] = {}  # task id -> the status we last wrote

    def __repr__(self) -> str:
        return f"<Agent {self.node_id} busy={len(self._busy)}>"

    # -- status ---------------------------------------------------------------------------

    async def _status(self, tid: str, st: str, msg: str, err: str = "", cid: str = "", pid: int = 0,
                      exit_code: int | None = None) -> None:  # fmt: skip
        prev = self._known.get(tid) or {}
        if prev.get("State") == st and prev.get("Err", "") == err:
            return
        now = time.time()
        body: dict[str, Any] = {"Timestamp": format_ts(now), "State": st, "Message": msg,
                                "Dockyard": {"Since": now, "Node": self.node_id}}  # fmt: skip
        if err:
            body["Err"] = err
        if cid:
            body["ContainerStatus"] = {"ContainerID": cid, "PID": pid, "ExitCode": exit_code or 0}
        await self.store.put("status", tid, body)
        self._known[tid] = body

    # -- the pass -------------------------------------------------------------------------

    def _containers(self) -> dict[str, dict[str, Any]]:
        out = {}
        for rec in self.runtime.all():
            tid = (rec.get("Config", {}).get("Labels") or {}).get(TASK_LABEL)
            if tid:
                out[tid] = rec
        return out

    async def converge(self) -> None:
        tasks = {o.id: o.data for o in await self.store.list("tasks")}
        statuses = {o.id: o.data for o in await self.store.list("status")}
        for tid, st in statuses.items():
            if st.get("Dockyard", {}).get("Node") == self.node_id:
                self._known.setdefault(tid, st)
        mine = {tid: t for tid, t in tasks.items() if t.get("NodeID") == self.node_id}
        containers = self._containers()
        for tid, t in mine.items():
            if tid in self._busy:
                continue
            rec = containers.get(tid)
            cur = (statuses.get(tid) or {}).get("State", "")
            if t["DesiredState"] == "running":
                if rec is None:
                    if cur not in TERMINAL and cur not in ("starting", "preparing"):
                        self._run(tid, self._start_task(t))
                    elif cur in ("starting", "preparing") and tid not in self._busy:
                        # a daemon killed mid-start left no container: the task failed
                        await self._status(tid, "failed", "task: non-zero exit (-1)", "container was lost")
                else:
                    s = rec["State"]
                    if s.get("Running"):
                        await self._status(
                            tid, "running", "started", cid=rec["Id"], pid=int(s.get("Pid") or 0)
                        )
                    elif s.get("Status") == "created" and cur not in TERMINAL:  # no start job runs (not busy)
                        # created but never started (a daemon killed mid-start): the task failed
                        await self._status(tid, "failed", "starting", "container was created but not started",
                                           cid=rec["Id"], exit_code=-1)  # fmt: skip
                    elif s.get("Status") in ("exited", "dead"):
                        code = int(s.get("ExitCode") or 0)
                        if code == 0:
                            await self._status(tid, "complete", "finished", cid=rec["Id"], exit_code=0)
                        else:
                            await self._status(tid, "failed", "task: non-zero exit", f"task: non-zero exit ({code})",
                                               cid=rec["Id"], exit_code=code)  # fmt: skip
            elif rec is not None:
                self._run(tid, self._stop_task(tid, rec, cur))
            elif cur not in TERMINAL and t["DesiredState"] in ("shutdown", "remove"):
                await self._status(tid, "shutdown", "shutdown")
        # containers of tasks that are gone or were moved away while this node was down
        for tid, rec in containers.items():
            if tid not in mine and tid not in self._busy:
                log.info("stopping stale task container %s (task %s)", rec["Id"][:12], tid)
                self._run(tid, self._remove_stale(tid, rec))
        for tid in list(self._known):
            if tid not in tasks:
                self._known.pop(tid, None)
                shutil.rmtree(self.secrets_dir / tid, ignore_errors=True)

    def _run(self, tid: str, coro: Any) -> None:
        self._busy.add(tid)

        async def job() -> None:
            try:
                async with self._sem:
                    await coro
            except StoreUnavailable as err:
                log.debug("task %s: %s", tid, err)
            except Exception:
                log.exception("task %s", tid)
            finally:
                self._busy.discard(tid)
                self.wake.set()

        j = asyncio.get_running_loop().create_task(job(), name=f"task-{tid}")
        self._jobs.add(j)
        j.add_done_callback(self._jobs.discard)

    async def _start_task(self, t: dict[str, Any]) -> None:
        tid = t["ID"]
        await self._status(tid, "preparing", "preparing")
        name = t.get("Dockyard", {}).get("ServiceName") or t["ServiceID"]
        try:
            mounts = await self._secret_mounts(t)
            body, cname = specs.container_body(t, name, self.node_id, mounts)
            cid = await self._create(body, cname)
        except errdefs.DockyardError as err:
            await self._status(tid, "rejected", "preparing", str(err))
            return
        await self._status(tid, "starting", "starting", cid=cid)
        try:
            await self.runtime.start_container(cid)
        except Exception as err:  # noqa: BLE001  (a task's root: whatever broke, the task failed; the scheduler decides)
            log.warning("task %s: start failed: %s", tid, err)
            await self._status(tid, "failed", "starting", f"starting container failed: {err}", cid=cid,
                               exit_code=-1)  # fmt: skip
            return
        rec = next((r for r in self.runtime.all() if r["Id"] == cid), None)
        pid = int(rec["State"].get("Pid") or 0) if rec else 0
        await self._status(tid, "running", "started", cid=cid, pid=pid)

    async def _create(self, body: dict[str, Any], name: str) -> str:
        try:
            cid, _ = await self.runtime.create(body, name)
        except errdefs.NotFound:
            image = str(body["Image"])
            if "@" not in image:
                raise
            # the CLI pins a digest when it could resolve one; a local image has the tag only
            cid, _ = await self.runtime.create({**body, "Image": image.split("@", 1)[0]}, name)
        return cid

    async def _stop_task(self, tid: str, rec: dict[str, Any], cur: str) -> None:
        with contextlib.suppress(errdefs.DockyardError):
            await self.runtime.stop(rec["Id"])
        with contextlib.suppress(errdefs.DockyardError):
            await self.runtime.remove(rec["Id"], force=True)
        shutil.rmtree(self.secrets_dir / tid, ignore_errors=True)
        if cur not in TERMINAL:
            await self._status(
                tid, "shutdown", "shutdown", cid=rec["Id"], exit_code=int(rec["State"].get("ExitCode") or 0)
            )

    async def _remove_stale(self, tid: str, rec: dict[str, Any]) -> None:
        with contextlib.suppress(errdefs.DockyardError):
            await self.runtime.stop(rec["Id"], timeout=2)
        with contextlib.suppress(errdefs.DockyardError):
            await self.runtime.remove(rec["Id"], force=True)
        shutil.rmtree(self.secrets_dir / tid, ignore_errors=True)

    async def _secret_mounts(self, t: dict[str, Any]) -> list[dict[str, Any]]:
        """Secrets and configs as read-only files bound into the task: secrets under
        /run/secrets/<name> (or their target), configs at their target. The files live in
        the exec root (tmpfs on a normal host), never on the data disk."""
        cs = t["Spec"]["ContainerSpec"]
        out: list[dict[str, Any]] = []
        refs = [("secrets", r) for r in cs.get("Secrets") or []] + [
            ("configs", r) for r in cs.get("Configs") or []
        ]
        if not refs:
            return out
        d = self.secrets_dir / t["ID"]
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        for kind, ref in refs:
            field = "SecretID" if kind == "secrets" else "ConfigID"
            obj = await self.store.get(kind, ref[field])
            if obj is None:
                raise errdefs.NotFound(f"{kind[:-1]} {ref.get(field[:-2] + 'Name') or ref[field]} not found")
            if kind == "secrets":
                data = seal.open_sealed(self.data_key, obj.data["Sealed"].encode(), obj.id.encode())
            else:
                data = base64.b64decode(obj.data["Spec"].get("Data") or "")
            f = ref.get("File") or {}
            target = str(f.get("Name") or ref.get(field[:-2] + "Name"))
            if not target.startswith("/"):
                target = ("/run/secrets/" if kind == "secrets" else "/") + target
            if ".." in Path(target).parts:
                raise errdefs.InvalidArgument(f"invalid {kind[:-1]} target {target!r}")
            src = d / f"{kind}-{obj.id}"
            fd = os.open(src, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, data)
                os.fchmod(fd, int(f.get("Mode") or 0o444))
                os.fchown(fd, int(f.get("UID") or 0), int(f.get("GID") or 0))
            finally:
                os.close(fd)
            out.append({"Type": "bind", "Source": str(src), "Target": target, "ReadOnly": True})
        return out

    async def run(self) -> None:
        log.info("agent of node %s started", self.node_id)
        while True:
            try:
                await self.converge()
            except StoreUnavailable as err:
                log.debug("agent: %s", err)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("agent pass failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self.wake.wait()

    async def close(self) -> None:
        for j in list(self._jobs):
            j.cancel()
        for j in list(self._jobs):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await j

    async def leave(self) -> None:
        """The node leaves the swarm: its task containers go (Docker does the same)."""
        await self.close()
        for tid, rec in self._containers().items():
            await self._remove_stale(tid, rec)
