"""Services, tasks, secrets and configs: the manager's API over the cluster state.

Owns their Docker views (Version = the key's etcd revision), create/update/remove with
compare-and-swap on the version, task listing with Docker's filters, and the sealing of
secret data (`seal.py`) before it reaches the store. It writes desired state only; the
scheduler turns services into tasks and the agents turn tasks into containers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from dockyard import errdefs
from dockyard.cluster import seal, specs, state, tasklogs, tokens
from dockyard.cluster.swarm import SwarmService
from dockyard.cluster.tasklogs import LogQuery
from dockyard.timefmt import now_rfc3339

OVERLAY_NETWORKS = "/dockyard/overlay/networks/"  # the overlay driver's documents (network/overlay_store.py)
TERMINAL = ("complete", "shutdown", "failed", "rejected", "remove", "orphaned")


def task_view(t: state.Obj, status: dict[str, Any] | None) -> dict[str, Any]:
    d = t.data
    st = (
        status
        or d.get("InitialStatus")
        or {"State": "new", "Timestamp": d["CreatedAt"], "Message": "created"}
    )
    out = {k: v for k, v in d.items() if k not in ("InitialStatus", "Dockyard")}
    out["Version"] = {"Index": t.revision}
    out["Status"] = st
    out.setdefault("Labels", {})
    return out


class ServiceManager:
    def __init__(self, swarm: SwarmService) -> None:
        self.swarm = swarm

    # -- services -------------------------------------------------------------------------

    async def _services(self) -> list[state.Obj]:
        return await self.swarm.manager_state().list("services")

    async def find_service(self, ref: str) -> state.Obj:
        svcs = await self._services()
        for match in _matchers(ref):
            found = [o for o in svcs if match(o)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise errdefs.InvalidArgument(f"service {ref} is ambiguous ({len(found)} matches found)")
        raise errdefs.NotFound(f"service {ref} not found")

    async def _resolve_refs(self, spec: dict[str, Any]) -> None:
        """Secret and config references by name or ID become both (Docker stores the ID)."""
        cs = spec["TaskTemplate"]["ContainerSpec"]
        for kind, field in (("secrets", "Secrets"), ("configs", "Configs")):
            refs = cs.get(field) or []
            if not refs:
                continue
            objs = await self.swarm.manager_state().list(kind)
            for ref in refs:
                want_id, want_name = ref.get(f"{field[:-1]}ID"), ref.get(f"{field[:-1]}Name")
                obj = next((o for o in objs if o.id == want_id), None) or next(
                    (o for o in objs if o.data["Spec"]["Name"] in (want_name, want_id)), None
                )
                if obj is None:
                    raise errdefs.NotFound(f"{field[:-1].lower()} not found: {want_name or want_id}")
                ref[f"{field[:-1]}ID"], ref[f"{field[:-1]}Name"] = obj.id, obj.data["Spec"]["Name"]

    async def _resolve_networks(self, spec: dict[str, Any]) -> None:
        """Overlay networks by name or ID become their ID (Docker stores the ID); a network
        that is no overlay of this swarm is refused."""
        nets = spec["TaskTemplate"].get("Networks") or []
        if not nets or nets[0]["Target"] in specs.LOCAL_NETWORKS:
            return
        kvs, _ = await self.swarm.manager_state().kv.get_prefix(OVERLAY_NETWORKS)
        docs = [json.loads(kv.value) for kv in kvs]
        want = nets[0]["Target"]
        doc = (
            next((d for d in docs if d["Id"] == want), None)
            or next((d for d in docs if d["Name"] == want), None)
            or next((d for d in docs if d["Id"].startswith(want)), None)
        )
        if doc is None:
            raise errdefs.NotFound(f"network {want} not found")
        nets[0]["Target"] = doc["Id"]

    async def create_service(self, spec: dict[str, Any]) -> dict[str, Any]:
        s = self.swarm.manager_state()
        if not spec.get("Name"):
            spec["Name"] = "svc-" + tokens.new_id()[:8]
        spec = specs.validate(spec)
        await self._resolve_refs(spec)
        await self._resolve_networks(spec)
        if any(o.data["Spec"]["Name"] == spec["Name"] for o in await self._services()):
            raise errdefs.Conflict(
                f"rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {spec['Name']} "
                "already exists"
            )
        sid = tokens.new_id()
        now = now_rfc3339()
        await s.create("services", sid, {"ID": sid, "CreatedAt": now, "UpdatedAt": now, "Spec": spec,
                                         "Endpoint": {"Spec": spec.get("EndpointSpec") or {"Mode": "vip"}}})  # fmt: skip
        return {"ID": sid, "Warnings": None}

    async def update_service(
        self, ref: str, version: int | None, spec: dict[str, Any], rollback: str = ""
    ) -> list[str]:
        s = self.swarm.manager_state()
        obj = await self.find_service(ref)
        if version is None:
            raise errdefs.InvalidArgument("invalid service version: the version parameter is required")
        d = dict(obj.data)
        now = now_rfc3339()
        if rollback == "previous":
            prev = d.get("PreviousSpec")
            if not prev:
                raise errdefs.InvalidArgument(f"service {obj.id} does not have a previous spec")
            d["Spec"], d["PreviousSpec"] = prev, d["Spec"]
            d["UpdateStatus"] = {
                "State": "rollback_started",
                "StartedAt": now,
                "Message": "manually requested rollback",
            }
        else:
            if rollback:
                raise errdefs.InvalidArgument(f"unrecognized rollback option {rollback}")
            new = specs.validate({**spec, "Name": spec.get("Name") or d["Spec"]["Name"]})
            if new["Name"] != d["Spec"]["Name"]:
                raise errdefs.InvalidArgument("renaming services is not supported")
            await self._resolve_refs(new)
            await self._resolve_networks(new)
            if specs.template_hash(new["TaskTemplate"]) != specs.template_hash(d["Spec"]["TaskTemplate"]):
                d["UpdateStatus"] = {"State": "updating", "StartedAt": now, "Message": "update in progress"}
            d["PreviousSpec"], d["Spec"] = d["Spec"], new
        d["UpdatedAt"] = now
        d["Endpoint"] = {"Spec": d["Spec"].get("EndpointSpec") or {"Mode": "vip"}}
        d.pop("Dockyard", None)
        await s.update("services", obj.id, d, version)
        return []

    async def remove_service(self, ref: str) -> None:
        obj = await self.find_service(ref)
        await self.swarm.manager_state().delete("services", obj.id)

    async def _counts(self) -> dict[str, dict[str, int]]:
        s = self.swarm.manager_state()
        tasks, statuses = await s.list("tasks"), {o.id: o.data for o in await s.list("status")}
        alive = await self.swarm.alive_ids()
        nodes = {n.id: n.data for n in await s.list("nodes")}
        out: dict[str, dict[str, int]] = {}
        for t in tasks:
            c = out.setdefault(
                t.data["ServiceID"], {"RunningTasks": 0, "DesiredTasks": 0, "CompletedTasks": 0}
            )
            st = (statuses.get(t.id) or {}).get("State")
            if t.data["DesiredState"] == "running":
                c["DesiredTasks"] += 1
                if st == "running" and t.data["NodeID"] in alive:
                    c["RunningTasks"] += 1
            if st == "complete":
                c["CompletedTasks"] += 1
        _ = nodes
        return out

    def _service_view(self, o: state.Obj, counts: dict[str, dict[str, int]] | None) -> dict[str, Any]:
        v = {k: val for k, val in o.data.items() if k != "Dockyard"}
        v["Version"] = {"Index": o.revision}
        if counts is not None:
            c = counts.get(o.id) or {"RunningTasks": 0, "DesiredTasks": 0, "CompletedTasks": 0}
            mode = o.data["Spec"]["Mode"]
            if "Replicated" in mode:
                c = {**c, "DesiredTasks": mode["Replicated"]["Replicas"]}
            v["ServiceStatus"] = c
        return v

    async def list_services(self, filters: dict[str, list[str]], status: bool) -> list[dict[str, Any]]:
        svcs = await self._services()
        for k, vals in filters.items():
            if k == "id":
                svcs = [o for o in svcs if any(o.id.startswith(x) for x in vals)]
            elif k == "name":
                svcs = [o for o in svcs if any(o.data["Spec"]["Name"].startswith(x) for x in vals)]
            elif k == "label":
                svcs = [
                    o for o in svcs if all(_label_match(o.data["Spec"].get("Labels") or {}, x) for x in vals)
                ]
            elif k == "mode":
                svcs = [o for o in svcs if any(m.capitalize() in o.data["Spec"]["Mode"] for m in vals)]
            else:
                raise errdefs.InvalidArgument(f"invalid filter '{k}'")
        counts = await self._counts() if status else None
        return [self._service_view(o, counts) for o in svcs]

    async def inspect_service(self, ref: str, status: bool = False) -> dict[str, Any]:
        o = await self.find_service(ref)
        return self._service_view(o, await self._counts() if status else None)

    # -- tasks ----------------------------------------------------------------------------

    async def list_tasks(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        s = self.swarm.manager_state()
        tasks = await s.list("tasks")
        statuses = {o.id: o.data for o in await s.list("status")}
        views = [task_view(t, statuses.get(t.id)) for t in tasks]
        svc_by_name: dict[str, str] | None = None
        for k, vals in filters.items():
            if k == "id":
                views = [v for v in views if any(v["ID"].startswith(x) for x in vals)]
            elif k == "service":
                if svc_by_name is None:
                    svc_by_name = {o.data["Spec"]["Name"]: o.id for o in await self._services()}
                ids = {svc_by_name.get(x, x) for x in vals}
                views = [
                    v
                    for v in views
                    if v["ServiceID"] in ids or any(v["ServiceID"].startswith(x) for x in vals)
                ]
            elif k == "node":
                nodes = await s.list("nodes")
                ids = {
                    n.id
                    for n in nodes
                    if n.id in vals or n.data.get("Description", {}).get("Hostname") in vals
                }
                ids |= {x for x in vals}
                views = [v for v in views if v["NodeID"] in ids]
            elif k == "desired-state":
                views = [v for v in views if v["DesiredState"] in vals]
            elif k == "label":  # swarmkit matches a task's labels and its service's
                svc_labels = {o.id: o.data["Spec"].get("Labels") or {} for o in await self._services()}
                views = [
                    v
                    for v in views
                    if all(
                        _label_match({**svc_labels.get(v["ServiceID"], {}), **(v.get("Labels") or {})}, x)
                        for x in vals
                    )
                ]
            elif k == "name":
                pass  # task names are <service>.<slot>: matched client-side by the CLI
            elif k == "_up-to-date":
                svcs = {
                    o.id: specs.template_hash(o.data["Spec"]["TaskTemplate"]) for o in await self._services()
                }
                by_id = {t.id: t.data for t in tasks}
                views = [
                    v
                    for v in views
                    if by_id[v["ID"]].get("Dockyard", {}).get("SpecHash") == svcs.get(v["ServiceID"])
                ]
            else:
                raise errdefs.InvalidArgument(f"invalid filter '{k}'")
        return views

    async def inspect_task(self, ref: str) -> dict[str, Any]:
        s = self.swarm.manager_state()
        t = await s.get("tasks", ref)
        if t is None:
            matches = [o for o in await s.list("tasks") if o.id.startswith(ref)]
            if len(matches) != 1:
                raise errdefs.NotFound(f"task {ref} not found")
            t = matches[0]
        st = await s.get("status", t.id)
        return task_view(t, st.data if st else None)

    async def log_frames(self, ref: str, task: bool, q: LogQuery) -> AsyncIterator[bytes]:
        """The multiplexed log frames of ref's tasks (a service, or one task), from every
        node that runs them (tasklogs.py)."""
        if task:
            tasks = [await self.inspect_task(ref)]
        else:
            svc = await self.find_service(ref)
            tasks = await self.list_tasks({"service": [svc.id]})
        nodes = {n.id: n.data for n in await self.swarm.manager_state().list("nodes")}
        for t in sorted(tasks, key=lambda t: (t.get("Slot") or 0, t["CreatedAt"])):
            nid = t.get("NodeID") or ""
            if nid == self.swarm.node_id:
                path = self.local_log_path(t["ID"])
                if path:
                    async for chunk in tasklogs.local_frames(t, nid, path, q):
                        yield chunk
            elif nid in nodes:
                async for chunk in tasklogs.remote_frames(self.swarm.files, nodes[nid]["Addr"], t["ID"], q):
                    yield chunk

    def local_log_path(self, task_id: str) -> str | None:
        return self.swarm.local_log_path(task_id)

    # -- secrets and configs --------------------------------------------------------------

    async def create_object(self, kind: str, spec: dict[str, Any]) -> dict[str, str]:
        s = self.swarm.manager_state()
        name = str(spec.get("Name") or "")
        if not specs.NAME_RE.match(name):
            raise errdefs.InvalidArgument(
                f"invalid name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )
        try:
            data = base64.b64decode(str(spec.get("Data") or ""), validate=True)
        except ValueError:
            raise errdefs.InvalidArgument("invalid Data: expected base64") from None
        if spec.get("Driver") or spec.get("Templating"):
            raise errdefs.Unsupported(f"{kind[:-1]} drivers and templating are not supported")
        if not data or len(data) > 500 * 1024:
            raise errdefs.InvalidArgument(f"{kind[:-1]} data must be 1 byte to 500 KiB")
        if any(o.data["Spec"]["Name"] == name for o in await s.list(kind)):
            raise errdefs.Conflict(
                f"rpc error: code = AlreadyExists desc = {kind[:-1]} {name} already exists"
            )
        oid = tokens.new_id()
        now = now_rfc3339()
        clean = {"Name": name, "Labels": spec.get("Labels") or {}}
        rec: dict[str, Any] = {"ID": oid, "CreatedAt": now, "UpdatedAt": now, "Spec": clean}
        if kind == "secrets":
            assert self.swarm.local is not None
            rec["Sealed"] = seal.seal(bytes.fromhex(self.swarm.local.data_key), data, oid.encode()).decode()
        else:
            rec["Spec"]["Data"] = base64.b64encode(data).decode()
        await s.create(kind, oid, rec)
        return {"ID": oid}

    async def _find_object(self, kind: str, ref: str) -> state.Obj:
        objs = await self.swarm.manager_state().list(kind)
        for match in _matchers(ref):
            found = [o for o in objs if match(o)]
            if len(found) == 1:
                return found[0]
        raise errdefs.NotFound(f"{kind[:-1]} {ref} not found")

    def _object_view(self, o: state.Obj) -> dict[str, Any]:
        return {k: v for k, v in o.data.items() if k != "Sealed"} | {"Version": {"Index": o.revision}}

    async def list_objects(self, kind: str, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        objs = await self.swarm.manager_state().list(kind)
        for k, vals in filters.items():
            if k == "name":
                objs = [o for o in objs if o.data["Spec"]["Name"] in vals]
            elif k == "id":
                objs = [o for o in objs if any(o.id.startswith(x) for x in vals)]
            elif k == "label":
                objs = [
                    o for o in objs if all(_label_match(o.data["Spec"].get("Labels") or {}, x) for x in vals)
                ]
            elif k != "names":
                raise errdefs.InvalidArgument(f"invalid filter '{k}'")
        return [self._object_view(o) for o in objs]

    async def inspect_object(self, kind: str, ref: str) -> dict[str, Any]:
        return self._object_view(await self._find_object(kind, ref))

    async def remove_object(self, kind: str, ref: str) -> None:
        o = await self._find_object(kind, ref)
        field = "SecretID" if kind == "secrets" else "ConfigID"
        users = [svc.data["Spec"]["Name"] for svc in await self._services()
                 if any(r.get(field) == o.id for r in
                        svc.data["Spec"]["TaskTemplate"]["ContainerSpec"].get(kind.capitalize()) or [])]  # fmt: skip
        if users:
            raise errdefs.InvalidArgument(
                f"rpc error: code = InvalidArgument desc = {kind[:-1]} '{o.data['Spec']['Name']}' is in use by the "
                f"following service: {', '.join(users)}"
            )
        await self.swarm.manager_state().delete(kind, o.id)


def _matchers(ref: str) -> list[Callable[[state.Obj], bool]]:
    """Docker's lookup order: full ID, then name, then unique ID prefix."""
    return [lambda o: o.id == ref, lambda o: o.data["Spec"]["Name"] == ref, lambda o: o.id.startswith(ref)]


def _label_match(labels: dict[str, Any], expr: str) -> bool:
    k, eq, v = expr.partition("=")
    return k in labels and (not eq or str(labels[k]) == v)


def dumps(v: Any) -> str:
    return json.dumps(v)
