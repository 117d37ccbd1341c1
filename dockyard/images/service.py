"""The image service: the one object the rest of the daemon holds for images, a thin facade.

It wires the parts, each with one owner, and forwards to them:

    store.py     ImageStore: images/refs tables over content and layers, the write
                 transaction (ImageWrite), pins and the collector
    views.py     inspect, list, history, df in Docker's shapes (read-only)
    local.py     tag, import, commit, the builder's commits, request-body spooling
    loadsave.py  docker load (typed progress events) and docker save
    remove.py    rmi and image prune (dockerd's untag/delete rules)
    pull.py, push.py  registry transfers (through `registries.DistributionService`)

It also owns the container side of images: a container's root filesystem is an overlay
snapshot (snapshots/) over the image's layers, which the snapshot records as its pins.
It knows nothing of HTTP or API versions.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

from dockyard._sys.mount import Mount
from dockyard.errdefs import InvalidArgument, NotFound
from dockyard.events import EventBus
from dockyard.idmap import IdentityMapping
from dockyard.images import archive, reference, views
from dockyard.images.loadsave import ImageArchives, LoadEvent
from dockyard.images.local import LocalImages, parse_target
from dockyard.images.model import Image, ImageNotFound
from dockyard.images.remove import ImageRemover, Usage
from dockyard.images.store import ImageStore
from dockyard.snapshots import diff as snapdiff
from dockyard.store import Store

__all__ = ["Image", "ImageNotFound", "ImageService"]


class ImageService:
    """Flow::

    img = await images.import_image(tar_path, repo="busybox", tag="latest", changes=['CMD ["sh"]'])
    m = images.prepare_rootfs(container_id, img.id)    # the container engine mounts m
    new = await images.commit(container_id, img.id, cfg, container_id=..., repo="x", ...)
    records = await images.delete("x:latest", force=False, noprune=False)
    """

    def __init__(
        self, store: Store, data_root: Path, events: EventBus, id_mapping: IdentityMapping | None = None
    ) -> None:
        self.store = ImageStore(store, data_root, events, id_mapping)
        self.data_root = data_root
        self.id_mapping = id_mapping
        self.content = self.store.content
        self.layers = self.store.layers
        self.snapshots = self.store.snapshots
        self.tmp = self.store.tmp
        self._users: Callable[[str], list[str]] = lambda image_id: []
        self._running_ids: Callable[[str], list[str]] | None = None
        self._local = LocalImages(self.store)
        self._archives = ImageArchives(self.store)
        self._remover = ImageRemover(self.store, self._usage)

    # -- wiring ---------------------------------------------------------------------------

    def set_usage_check(self, fn: Callable[[str], list[str]]) -> None:
        """fn(image_id) -> IDs of containers using it (running or not)."""
        self._users = fn

    def set_running_check(self, fn: Callable[[str], list[str]]) -> None:
        """fn(image_id) -> IDs of the running containers using it."""
        self._running_ids = fn

    def _usage(self, image_id: str) -> Usage:
        users = [str(u) for u in self._users(image_id) or []]
        running_set = set(self._running_ids(image_id) or []) if self._running_ids else set()
        return Usage([u for u in users if u in running_set], [u for u in users if u not in running_set])

    def _user_ids(self, image_id: str) -> list[str]:
        return self._users(image_id)

    # -- lookups and views ----------------------------------------------------------------

    def get(self, image_id: str) -> Image | None:
        return self.store.get(image_id)

    def all(self) -> list[Image]:
        return self.store.all()

    def parent_ids(self) -> set[str]:
        return self.store.parent_ids()

    def resolve(self, ref: str) -> Image:
        return self.store.resolve(ref)

    @staticmethod
    def familiar(ref: str) -> str:
        """How Docker shows a reference: `docker.io/library/bb:1` -> `bb:1` (unparsable: as is)."""
        try:
            return reference.parse_normalized(ref).familiar()
        except InvalidArgument:
            return ref

    def lowers(self, image: Image) -> list[Path]:
        """Layer dirs of the image, top-first (overlay's lowerdir order)."""
        return [self.layers.diff_dir(c) for c in reversed(image.chain_ids)]

    def image_json(self, image: Image) -> dict[str, Any]:
        return views.image_json(self.store, image)

    def image_summary(self, image: Image, *, containers: int = -1) -> dict[str, Any]:
        return views.image_summary(image, containers=containers)

    def list_images(
        self,
        *,
        all: bool = False,
        filters: dict[str, list[str]] | None = None,
        container_counts: bool = False,
    ) -> list[dict[str, Any]]:
        return views.list_images(
            self.store, self._user_ids, all=all, filters=filters, container_counts=container_counts
        )

    def history(self, image: Image) -> list[dict[str, Any]]:
        return views.history(self.store, image)

    def disk_usage(self) -> dict[str, Any]:
        return views.disk_usage(self.store, self._user_ids)

    def statistics(self) -> dict[str, int]:
        return {"images": self.store.count(), "layers": len(self.layers.ids())}

    # -- writes ---------------------------------------------------------------------------

    parse_target = staticmethod(parse_target)

    async def tag(self, source: str, repo: str, tag: str | None) -> Image:
        return await self._local.tag(source, repo, tag)

    async def delete(self, ref: str, *, force: bool = False, noprune: bool = False) -> list[dict[str, str]]:
        return await self._remover.delete(ref, force=force, noprune=noprune)

    async def prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return await self._remover.prune(filters)

    async def gc(self) -> int:
        return await self.store.collect()

    async def spool(self, chunks: AsyncIterator[bytes]) -> Path:
        return await self._local.spool(chunks)

    async def import_image(self, source: Path, **kw: Any) -> Image:
        return await self._local.import_image(source, **kw)

    async def commit(
        self,
        key: str,
        parent_image_id: str,
        container_config: dict[str, Any],
        *,
        container_id: str,
        repo: str | None,
        tag: str | None,
        comment: str,
        author: str,
        changes: list[str],
    ) -> Image:
        return await self._local.commit(
            self.upper_dir(key),
            parent_image_id,
            container_config,
            container_id=container_id,
            repo=repo,
            tag=tag,
            comment=comment,
            author=author,
            changes=changes,
        )

    async def create_image(
        self, config: dict[str, Any], *, parent: str = "", layer_dir: Path | None = None
    ) -> Image:
        return await self._local.create_image(config, parent=parent, layer_dir=layer_dir)

    def load(self, source: Path) -> AsyncGenerator[LoadEvent, None]:
        return self._archives.load(source)

    def save_items(self, names: list[str]) -> list[archive.SaveItem]:
        return self._archives.save_items(names)

    def write_save(self, items: list[archive.SaveItem], out: IO[bytes]) -> None:
        self._archives.write_save(items, out)

    def publish_saved(self, items: list[archive.SaveItem]) -> None:
        self._archives.publish_saved(items)

    # -- container root filesystems --------------------------------------------------------

    def prepare_rootfs(self, key: str, image_id: str) -> Mount:
        img = self.get(image_id) or self.resolve(image_id)
        chains = img.chain_ids
        for c in chains:
            if not self.layers.exists(c):
                raise NotFound(f"layer {c} of image {img.short_id} does not exist")
        # the snapshot records the layers it stands on: the collector keeps them
        return self.snapshots.prepare(key, [self.layers.link(c) for c in reversed(chains)], pins=chains)

    def remove_rootfs(self, key: str) -> None:
        self.snapshots.remove(key)

    def upper_dir(self, key: str) -> Path:
        return self.snapshots.upper(key)

    def _snapshot_lowers(self, key: str) -> list[Path]:
        chains = self.snapshots.pins(key)
        if chains is None:
            return []
        return [self.snapshots.init_dir(key), *(self.layers.diff_dir(c) for c in reversed(chains))]

    def rootfs_graph_data(self, key: str, merged: Path) -> dict[str, str]:
        """GraphDriver.Data of a container's inspect, as overlay2 shows it."""
        upper = self.upper_dir(key)
        return {
            "LowerDir": ":".join(str(p) for p in self._snapshot_lowers(key)),
            "MergedDir": str(merged),
            "UpperDir": str(upper),
            "WorkDir": str(upper.parent / "work"),
        }

    def changes(self, key: str) -> list[dict[str, Any]]:
        return snapdiff.changes(self.upper_dir(key), self._snapshot_lowers(key))
