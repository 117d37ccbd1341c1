"""The build cache: which image a build step produced, keyed by what determines it.

A key is the sha256 of the parent image ID, the step's instruction as it will appear in
history (variables expanded, RUN's build args in effect included), and for COPY/ADD the
content digest of its sources. A hit gives the step's image; an image removed since
(`docker rmi`, or the builder's own clean-up of untagged stage images) is put back from
the config kept in the entry, because the entry's `chains` pin its layers against the
image store's collector. Rows live in the store's `build_cache` table, so the cache
survives daemon restarts; `prune` drops rows and lets the collector free their layers.

An entry whose image is a tagged image or one of its parents is *shared* (what it would
rebuild is still there, and its layers are the image's). `builder prune` removes only the
other, dangling entries, as `docker builder prune` does; `prune(all=True)` removes every
entry. (dockerd's classic builder keeps its cache in the parent chains of images, which
`builder prune` never touches: dockyard's cache outlives `rmi`, and prune is how to clear it.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from dockyard.images.layers import chain_ids
from dockyard.images.service import Image, ImageService
from dockyard.store import Store
from dockyard.timefmt import format_ts

__all__ = ["BuildCache", "cache_key"]

log = logging.getLogger(__name__)


def cache_key(parent: str, instruction: str, *, args: list[str] | None = None, sources: str = "", extra: str = "") -> str:
    doc = json.dumps([parent, instruction, sorted(args or []), sources, extra], separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()


class BuildCache:
    """Flow::

        key = cache_key(parent.id, "/bin/sh -c make", args=["V=1"])
        img = await cache.lookup(key)            # None on a miss
        ... run the step, commit img ...
        cache.record(key, img, created_by="/bin/sh -c make")
    """

    def __init__(self, store: Store, images: ImageService) -> None:
        self._rows = store.build_cache
        self._images = images

    async def lookup(self, key: str) -> Image | None:
        doc = self._rows.get(key)
        if doc is None:
            return None
        img = self._images.get(doc["image"])
        if img is None:
            if not all(self._images.layers.exists(c) for c in doc.get("chains") or []):
                self._rows.delete(key)
                return None
            img = await self._images.create_image(doc["config"], parent=doc.get("parent") or "")
            if img.id != doc["image"]:
                log.warning("build cache entry %s re-created as %s, not %s", key[:12], img.id, doc["image"])
        doc["last_used"] = time.time()
        doc["usage"] = int(doc.get("usage") or 0) + 1
        self._rows.put(key, doc, name=img.id)
        return img

    def record(self, key: str, img: Image, *, created_by: str, made_layer: bool) -> None:
        size = 0
        if made_layer and img.chain_ids:
            layer = self._images.layers.get(img.chain_ids[-1])
            size = layer.size if layer else 0
        doc = {
            "image": img.id,
            "config": json.loads(img.config_bytes),
            "parent": img.parent,
            "created_by": created_by,
            "chains": chain_ids(img.diff_ids),
            "size": size,
            "last_used": time.time(),
            "usage": 1,
        }
        self._rows.put(key, doc, name=img.id)

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        return [(r[0], self._rows.get(r[0]) or {}) for r in self._rows.rows()]

    def shared_images(self) -> set[str]:
        """Tagged images and their parent chains: their cache entries are not dangling."""
        keep: set[str] = set()
        for img in self._images.all():
            if not (img.repo_tags or img.repo_digests):
                continue
            cur: Image | None = img
            while cur is not None and cur.id not in keep:
                keep.add(cur.id)
                cur = self._images.get(cur.parent) if cur.parent else None
        return keep

    def usage(self) -> list[dict[str, Any]]:
        """Docker's `BuildCache` records for /system/df."""
        out = []
        shared = self.shared_images()
        for key, doc in self.entries():
            created = self._rows_created(key)
            out.append(
                {
                    "ID": key[:25],
                    "Parent": "",
                    "Parents": None,
                    "Type": "regular",
                    "Description": doc.get("created_by", ""),
                    "InUse": False,
                    "Shared": doc.get("image") in shared,
                    "Size": int(doc.get("size") or 0),
                    "CreatedAt": format_ts(created),
                    "LastUsedAt": format_ts(doc.get("last_used") or created),
                    "UsageCount": int(doc.get("usage") or 1),
                }
            )
        return out

    def _rows_created(self, key: str) -> float:
        for r in self._rows.rows():
            if r[0] == key:
                return float(r[2])
        return time.time()

    async def prune(self, *, all: bool = False, unused_since: float | None = None) -> dict[str, Any]:
        """Drop cache entries (with `unused_since`, only those last used before it)."""
        before = self._images.disk_usage()["LayersSize"]
        deleted = []
        keep = set() if all else self.shared_images()
        for key, doc in self.entries():
            if doc.get("image") in keep:
                continue
            if unused_since is not None and float(doc.get("last_used") or 0) >= unused_since:
                continue
            self._rows.delete(key)
            deleted.append(key[:25])
        await self._images.gc()
        after = self._images.disk_usage()["LayersSize"]
        return {"CachesDeleted": deleted or None, "SpaceReclaimed": max(0, before - after)}
