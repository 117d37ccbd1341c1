"""VolumeService: the lifecycle of volumes (create, list, inspect, mount, unmount, remove, prune).

A typical flow::

    v = volumes.create("pgdata", labels={"app": "db"})      # row in the store, empty directory
    await volumes.mount("pgdata", cid, destination="/var/lib/pg", rw=True)   # at container start
    await volumes.copy_up("pgdata", rootfs, "/var/lib/pg")   # Docker's copy-up, only when empty
    await volumes.unmount("pgdata", cid)                     # at container exit
    await volumes.remove("pgdata")                           # 409 while a container refers to it

The stored document is the inspect view plus a private `Dockyard` section holding the ids of
the containers that currently have the volume mounted, so a volume with driver options (tmpfs,
bind-style) is mounted at its first user's start and unmounted when its last user stops, even
across a daemon restart. Which containers *refer* to a volume (for 409 and `dangling`) is the
container service's knowledge, passed in with `set_usage_check`. Anonymous volumes carry
Docker's `com.docker.volume.anonymous` label, which `prune` and `rm -v` go by.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dockyard import errdefs
from dockyard._sys.rootdir import RootDir, copy_tree
from dockyard.events import EventBus
from dockyard.filters import labels_match
from dockyard.store import Store
from dockyard.volumes import local

log = logging.getLogger(__name__)

ANONYMOUS_LABEL = "com.docker.volume.anonymous"

Volume = dict[str, Any]


class VolumeNotFound(errdefs.NotFound):
    pass


class VolumeInUse(errdefs.Conflict):
    pass


def _created_at() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _truthy(values: list[str], key: str) -> bool:
    v = values[-1].lower()
    if v in ("1", "true"):
        return True
    if v in ("0", "false"):
        return False
    raise errdefs.InvalidArgument(f"invalid filter '{key}={values[-1]}'")


def view(doc: Volume) -> Volume:
    """The API's Volume object: the stored document without the private section."""
    return {k: v for k, v in doc.items() if k != "Dockyard"}


class VolumeService:
    def __init__(
        self, store: Store, root: Path, events: EventBus, root_pair: tuple[int, int] | None = None
    ) -> None:
        self.store = store
        self.events = events
        # private (daemon/roots.py); a remapped daemon's container root must reach the sources
        root.mkdir(parents=True, exist_ok=True, mode=0o700 if root_pair is None else 0o701)
        self.driver = local.LocalDriver(root, root_pair)
        self._users: Callable[[str], list[str]] = lambda name: []
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<VolumeService {self.driver.root}>"

    def set_usage_check(self, fn: Callable[[str], list[str]]) -> None:
        """fn(name) -> ids of the containers whose Mounts refer to the volume."""
        self._users = fn

    def statistics(self) -> dict[str, int]:
        return {"volumes": len(self.store.volumes.rows())}

    # ---- create / get ---------------------------------------------------------------------

    def create(
        self, name: str | None = None, driver: str | None = None, driver_opts: dict[str, str] | None = None,
        labels: dict[str, str] | None = None, *, anonymous: bool = False,
    ) -> Volume:  # fmt: skip
        """Create a volume, or return the existing one of that name (Docker's idempotent create)."""
        driver = driver or "local"
        if driver != "local":
            raise errdefs.NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        name = name or secrets.token_hex(32)
        local.validate_name(name)
        opts = {str(k): str(v) for k, v in (driver_opts or {}).items()}
        local.validate_options(opts)
        existing = self.store.volumes.get(name)
        if existing is not None:  # Docker publishes `create` for every create, new or not
            self.events.publish("volume", "create", name, {"driver": existing["Driver"]})
            return view(existing)
        labels = dict(labels or {})
        if anonymous:
            labels[ANONYMOUS_LABEL] = ""
        mountpoint = self.driver.create(name)
        doc: Volume = {
            "CreatedAt": _created_at(),
            "Driver": driver,
            "Labels": labels or None,
            "Mountpoint": str(mountpoint),
            "Name": name,
            "Options": opts or None,
            "Scope": "local",
            "Dockyard": {"MountedBy": []},
        }
        try:
            self.store.volumes.put(name, doc, name=name)
        except BaseException:
            self.driver.remove(name)
            raise
        self.events.publish("volume", "create", name, {"driver": driver})
        log.info("volume %s created", name[:12])
        return view(doc)

    def get(self, name: str) -> Volume:
        doc = self.store.volumes.get(name) if name else None
        if doc is None:
            raise VolumeNotFound(f"get {name}: no such volume")
        return doc

    def inspect(self, name: str) -> Volume:
        return view(self.get(name))

    def is_anonymous(self, name: str) -> bool:
        doc = self.store.volumes.get(name)
        return bool(doc and ANONYMOUS_LABEL in (doc.get("Labels") or {}))

    # ---- list ------------------------------------------------------------------------------

    def list_volumes(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        f = filters or {}
        for key in f:
            if key not in ("name", "label", "label!", "dangling", "driver"):
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        dangling = _truthy(f["dangling"], "dangling") if f.get("dangling") else None
        out = []
        for doc in sorted(self.store.volumes.all(), key=lambda d: d["Name"]):
            if not self._matches(doc, f):
                continue
            if dangling is not None and (not self._users(doc["Name"])) != dangling:
                continue
            out.append(view(doc))
        return {"Volumes": out, "Warnings": None}

    @staticmethod
    def _matches(doc: Volume, f: dict[str, list[str]]) -> bool:
        labels = doc.get("Labels") or {}
        if f.get("name") and not any(_search(w, doc["Name"]) for w in f["name"]):
            return False
        if f.get("driver") and doc["Driver"] not in f["driver"]:
            return False
        if f.get("label") and not labels_match(labels, f["label"]):
            return False
        return not (f.get("label!") and any(labels_match(labels, [w]) for w in f["label!"]))

    # ---- mount / unmount ---------------------------------------------------------------------

    async def mount(
        self, name: str, cid: str, *, destination: str = "", rw: bool = True, propagation: str = "",
        announce: bool = True,
    ) -> str:
        """Make the volume ready for a starting container; returns its Mountpoint.
        `announce=False`: the caller publishes `mount` later (`announce_mount`), in dockerd's
        order (after the container's network `connect`)."""
        async with self._lock:
            doc = self.get(name)
            opts = doc.get("Options") or {}
            await asyncio.to_thread(self.driver.create, name)
            await asyncio.to_thread(self.driver.mount, name, opts)
            users = doc["Dockyard"].setdefault("MountedBy", [])
            if cid not in users:
                users.append(cid)
                self.store.volumes.put(name, doc, name=name)
        if announce:
            self.announce_mount(name, cid, destination=destination, rw=rw, propagation=propagation)
        return str(doc["Mountpoint"])

    def announce_mount(self, name: str, cid: str, *, destination: str, rw: bool, propagation: str) -> None:
        doc = self.store.volumes.get(name)
        driver = doc["Driver"] if doc is not None else "local"
        self.events.publish(
            "volume", "mount", name,
            {"container": cid, "destination": destination, "driver": driver,
             "propagation": propagation, "read/write": str(rw).lower()},
        )  # fmt: skip

    def announce_unmount(self, name: str, cid: str) -> None:
        doc = self.store.volumes.get(name)
        self.events.publish("volume", "unmount", name, {"container": cid, "driver": doc["Driver"] if doc else "local"})

    async def unmount(self, name: str, cid: str, *, announce: bool = True) -> bool:
        """A container that used the volume stopped; the last one out unmounts driver options.
        False: the container did not hold it. `announce=False`: the caller publishes `unmount`
        later (`announce_unmount`, after `die`, as dockerd)."""
        async with self._lock:
            doc = self.store.volumes.get(name)
            if doc is None:
                return False
            users = doc["Dockyard"].setdefault("MountedBy", [])
            if cid not in users:
                return False
            users.remove(cid)
            self.store.volumes.put(name, doc, name=name)
            if not users:
                await asyncio.to_thread(self.driver.unmount, name, doc.get("Options") or {})
        if announce:
            self.events.publish("volume", "unmount", name, {"container": cid, "driver": doc["Driver"]})
        return True

    async def copy_up(self, name: str, rootfs: Path, path: str) -> bool:
        """Docker's copy-up: an empty volume gets the image's content at its mount path.

        `path` is resolved in `rootfs` (the container's, untrusted: an image's `/x -> /etc`
        means the image's /etc, never the host's), and the copy runs by fds on both sides
        (`_sys.rootdir.copy_tree`), so no symlink in the image or in the volume is followed.
        """
        if not await asyncio.to_thread(self.driver.is_empty, name):
            return False
        return await asyncio.to_thread(self._copy_up_sync, name, rootfs, path)

    def _copy_up_sync(self, name: str, rootfs: Path, path: str) -> bool:
        with RootDir(rootfs) as root:
            try:
                src = root.open_dir(path)
            except OSError as err:  # missing, not a directory, a symlink loop: nothing to copy
                log.debug("volume %s: no copy-up from %s: %s", name[:12], path, err)
                return False
        try:
            if not _has_entries(src):
                return False
            dst = os.open(self.driver.mountpoint(name), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                copy_tree(src, dst)
                # the volume's own root takes the directory's owner and mode, as Docker's
                # copyOwnership does
                st = os.fstat(src)
                os.fchown(dst, st.st_uid, st.st_gid)
                os.fchmod(dst, stat.S_IMODE(st.st_mode))
            finally:
                os.close(dst)
        finally:
            os.close(src)
        return True

    # ---- remove / prune ----------------------------------------------------------------------

    async def remove(self, name: str, force: bool = False) -> None:
        async with self._lock:
            try:
                doc = self.get(name)
            except VolumeNotFound:
                if force:
                    return
                raise
            users = self._users(name)
            if users:
                raise VolumeInUse(f"remove {name}: volume is in use - [{', '.join(users)}]")
            await self._destroy_locked(doc)

    async def _destroy_locked(self, doc: Volume) -> None:
        name = doc["Name"]
        await asyncio.to_thread(self.driver.remove, name)
        self.store.volumes.delete(name)
        self.events.publish("volume", "destroy", name, {"driver": doc["Driver"]})
        log.info("volume %s removed", name[:12])

    async def remove_if_unused(self, name: str) -> bool:
        """`rm -v`: an anonymous volume goes with its container unless another one still uses it."""
        async with self._lock:
            doc = self.store.volumes.get(name)
            if doc is None or self._users(name):
                return False
            await self._destroy_locked(doc)
            return True

    async def prune(
        self, filters: dict[str, list[str]] | None = None, *, all_volumes: bool = False
    ) -> dict[str, Any]:
        """Remove unused volumes: anonymous ones only (API 1.42+), or all with the `all` filter."""
        f = dict(filters or {})
        for key in f:
            if key not in ("label", "label!", "all"):
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        if f.get("all"):
            all_volumes = _truthy(f.pop("all"), "all")
        deleted: list[str] = []
        reclaimed = 0
        async with self._lock:
            for doc in self.store.volumes.all():
                labels = doc.get("Labels") or {}
                if not all_volumes and ANONYMOUS_LABEL not in labels:
                    continue
                if not self._matches(doc, f) or self._users(doc["Name"]):
                    continue
                size = await asyncio.to_thread(self.driver.size, doc["Name"])
                await self._destroy_locked(doc)
                deleted.append(doc["Name"])
                reclaimed += size
        self.events.publish("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

    # ---- usage -------------------------------------------------------------------------------

    async def disk_usage(self) -> list[Volume]:
        """Every volume with UsageData {Size, RefCount}, for /system/df."""
        out = []
        for doc in self.store.volumes.all():
            v = view(doc)
            size = await asyncio.to_thread(self.driver.size, doc["Name"])
            v["UsageData"] = {"Size": size, "RefCount": len(self._users(doc["Name"]))}
            out.append(v)
        return out


def _search(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return pattern in name


def _has_entries(dfd: int) -> bool:
    with os.scandir(dfd) as it:
        return next(it, None) is not None


__all__ = ["ANONYMOUS_LABEL", "VolumeInUse", "VolumeNotFound", "VolumeService", "view"]
