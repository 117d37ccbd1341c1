"""The cache lookups of a build step: the build cache, and `--cache-from` sources.

Owns the decision whether a step is already built: a hit in the build cache (with
cache-from sources, only one in a source's parent chain counts, as moby's `image/cache`
decides), else a source image whose history continues the stage's with this step (the
source itself at its last entry, else a new image with that entry and layer, recorded in
our cache too). The keys are `cache.py`'s; what a step does on a miss is its executor's.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from dockyard.build import progress
from dockyard.build.imageconfig import StageState
from dockyard.build.session import BuildSession
from dockyard.images.service import Image

__all__ = ["cached"]


async def cached(
    b: BuildSession, s: StageState, key: str, created_by: str, mutate: Callable[[], None] | None = None
) -> bool:
    """Is the step in the cache (then `s` moves onto its image)? `mutate` is a metadata
    step's change to the config, applied here only when a cache-from image supplies it."""
    if b.opts.nocache:
        return False
    img = await b.svc.cache.lookup(key)
    if img is not None and b.opts.cachefrom and not _in_source_chains(b, img.id):
        # with cache-from, dockerd trusts only the sources' own parent chains: none at all
        # when no source image exists (its image cache then has no local part)
        img = None
    if img is None and b.sources:
        img = await _restore_from_sources(b, s, key, created_by, mutate)
    if img is None:
        return False
    if b.svc.images.get(img.id) is not None and img.id not in b.made:
        b.made.append(img.id)
    s.image_id = img.id
    s.cfg = json.loads(img.config_bytes)
    await b.emit(progress.CacheHit())
    await b.emit(progress.StepImage(img.id))
    return True


def _in_source_chains(b: BuildSession, image_id: str) -> bool:
    images = b.svc.images
    for src in b.sources:
        cur = images.get(src.parent) if src.parent else None
        while cur is not None:
            if cur.id == image_id:
                return True
            cur = images.get(cur.parent) if cur.parent else None
    return False


async def _restore_from_sources(
    b: BuildSession, s: StageState, key: str, created_by: str, mutate: Callable[[], None] | None
) -> Image | None:
    """dockerd's cache-from: a source image whose history and layers start with the
    current image's and whose next history entry is this step gives the step's image
    (the source itself at its last entry; else a new image with that entry and layer)."""
    history = list(s.cfg.get("history") or [])
    diff_ids = list((s.cfg.get("rootfs") or {}).get("diff_ids") or [])
    for src in b.sources:
        src_history = list(src.config.get("history") or [])
        src_diffs = list((src.config.get("rootfs") or {}).get("diff_ids") or [])
        if len(src_history) <= len(history) or src_history[: len(history)] != history:
            continue
        if (
            src_diffs[: len(diff_ids)] != diff_ids
            or src_history[len(history)].get("created_by") != created_by
        ):
            continue
        entry = src_history[len(history)]
        made_layer = not entry.get("empty_layer")
        if made_layer and len(src_diffs) <= len(diff_ids):
            continue
        b.sources = [src]  # dockerd: never jump to another source afterwards
        if len(src_history) == len(history) + 1:
            return src
        if mutate is not None:
            mutate()
        cfg = json.loads(json.dumps(s.cfg))
        cfg["created"] = entry.get("created") or cfg.get("created")
        cfg["history"] = [*history, entry]
        if made_layer:
            diff_ids.append(src_diffs[len(diff_ids)])
        cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        img = await b.svc.images.create_image(cfg, parent=s.image_id)
        b.svc.cache.record(key, img, created_by=created_by, made_layer=made_layer)
        return img
    return None
