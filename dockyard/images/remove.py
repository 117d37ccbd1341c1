"""`docker rmi` and `docker image prune`: dockerd's untag-vs-delete rules and conflicts.

Owns the decisions only; the rows change through the store's locked edits and the
layers go with the store's collector, both under the store's lock (short: no client I/O
happens in here)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dockyard.errdefs import Conflict, InvalidArgument, NotFound
from dockyard.filters import labels_match
from dockyard.images import reference
from dockyard.images.model import Image, ImageDeleteConflict, ImageNotFound, short
from dockyard.images.store import ImageStore
from dockyard.images.views import until_filter

__all__ = ["ImageRemover", "Usage"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Usage:
    running: list[str]
    stopped: list[str]


class ImageRemover:
    def __init__(self, store: ImageStore, usage: Callable[[str], Usage]) -> None:
        self._s = store
        self._usage = usage

    async def delete(self, ref: str, *, force: bool = False, noprune: bool = False) -> list[dict[str, str]]:
        async with self._s.lock:
            records: list[dict[str, str]] = []
            try:
                self._delete_locked(ref, force=force, prune=not noprune, records=records)
            finally:
                if any("Deleted" in r for r in records):
                    await asyncio.to_thread(self._s.collect_sync)
            return records

    def _untag(self, img: Image, key: str, records: list[dict[str, str]]) -> None:
        self._s.delete_ref_locked(key)
        records.append({"Untagged": reference.familiar(key)})
        self._s.publish("untag", img)

    def _delete_locked(self, ref: str, *, force: bool, prune: bool, records: list[dict[str, str]]) -> None:
        """dockerd's ImageDelete (daemon/images/image_delete.go), step for step."""
        img = self._s.resolve(ref)
        repo_refs = self._s.refs_for(img.id)
        removed_repo_ref = False
        if not _is_id_ref(img.id, ref):
            parsed = reference.parse_normalized(ref).with_default_tag()
            if not force and _is_single_reference(repo_refs):
                usage = self._usage(img.id)
                users = usage.running + usage.stopped
                if users:
                    raise Conflict(
                        f'conflict: unable to remove repository reference "{ref}" (must force) - container '
                        f"{short(users[0])} is using its referenced image {img.short_id}"
                    )
            if not self._s.delete_ref_locked(str(parsed)):
                raise ImageNotFound(ref)
            records.append({"Untagged": parsed.familiar()})
            self._s.publish("untag", img)
            if parsed.digest is None:
                # dockerd: with the repository's last tag gone, its digest references go too
                same_repo = [
                    r
                    for r in self._s.refs_for(img.id)
                    if r.partition("@")[0].rpartition(":")[0] == parsed.name
                    or r.partition("@")[0] == parsed.name
                ]
                if not any("@" not in r for r in same_repo):
                    for r in same_repo:
                        self._untag(img, r, records)
            if self._s.refs_for(img.id):
                return
            removed_repo_ref = True
        elif _is_single_reference(repo_refs):
            self._check_conflict(img, hard_only=force, ignore_refs=True)
            for r in repo_refs:
                self._untag(img, r, records)
        self._delete_helper(img.id, records, force=force, prune=prune, quiet=removed_repo_ref)

    def _check_conflict(self, img: Image, *, hard_only: bool, ignore_refs: bool = False) -> None:
        def fail(msg: str, hard: bool, used: bool = False) -> None:
            how = "cannot be forced" if hard else "must be forced"
            raise ImageDeleteConflict(f"conflict: unable to delete {img.short_id} ({how}) - {msg}", used=used)

        if self._s.children(img.id):
            fail("image has dependent child images", True)
        usage = self._usage(img.id)
        if usage.running:
            fail(f"image is being used by running container {short(usage.running[0])}", True, True)
        if hard_only:
            return
        if not ignore_refs and self._s.refs_for(img.id):
            fail("image is referenced in multiple repositories", False)
        if usage.stopped:
            fail(f"image is being used by stopped container {short(usage.stopped[0])}", False, True)

    def _delete_helper(
        self, image_id: str, records: list[dict[str, str]], *, force: bool, prune: bool, quiet: bool
    ) -> None:
        img = self._s.get(image_id)
        if img is None:
            return
        try:
            self._check_conflict(img, hard_only=force)
        except ImageDeleteConflict as conflict:
            dangling = not self._s.refs_for(image_id) and not self._s.children(image_id)
            if quiet and (not dangling or conflict.used):
                return  # dockerd: stop quietly unless the user would be left with a dangling image
            raise
        for r in self._s.refs_for(image_id):
            self._untag(img, r, records)
        self._s.delete_image_locked(image_id)
        self._s.publish("delete", img.id)  # dockerd: no labels on `delete`, unlike `untag`
        records.append({"Deleted": image_id})
        if prune and img.parent:
            self._delete_helper(img.parent, records, force=False, prune=True, quiet=True)

    async def prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        f = filters or {}
        for key in f:
            if key not in ("dangling", "label", "label!", "until"):
                raise InvalidArgument(f"invalid filter '{key}'")
        dangling_only = True
        if "dangling" in f:
            vals = {v.lower() for v in f["dangling"]}
            dangling_only = not (vals & {"false", "0"})
        until = until_filter(f)
        async with self._s.lock:
            before = self._s.layer_bytes()
            records: list[dict[str, str]] = []
            images = self._s.all()
            parents = {img.parent for img in images if img.parent}
            for img in images:
                if self._s.get(img.id) is None:
                    continue  # removed as the parent of an earlier one
                tagged = bool(img.repo_tags or img.repo_digests)
                if dangling_only and (tagged or img.id in parents):
                    continue
                if until is not None and not img.created < until:
                    continue
                if "label" in f and not labels_match(img.labels, f["label"]):
                    continue
                if "label!" in f and labels_match(img.labels, f["label!"], any_of=True):
                    continue
                usage = self._usage(img.id)
                if usage.running or usage.stopped:
                    continue
                try:
                    if tagged:
                        for r in self._s.refs_for(img.id):
                            self._delete_locked(
                                reference.familiar(r), force=False, prune=True, records=records
                            )
                    else:
                        self._delete_locked(img.id, force=False, prune=True, records=records)
                except (Conflict, NotFound) as err:
                    log.debug("prune skipped %s: %s", img.short_id, err)
            await asyncio.to_thread(self._s.collect_sync)
            reclaimed = max(0, before - self._s.layer_bytes())
        self._s.publish_raw("prune", "", {"reclaimed": str(reclaimed)})
        return {"ImagesDeleted": records or None, "SpaceReclaimed": reclaimed}


def _is_id_ref(image_id: str, ref: str) -> bool:
    hexpart = ref.removeprefix("sha256:")
    return reference.is_id_like(ref) and image_id.removeprefix("sha256:").startswith(hexpart)


def _is_single_reference(refs: list[str]) -> bool:
    """dockerd's isSingleReference: at most one tag, plus digests of that same repository."""
    if len(refs) <= 1:
        return len(refs) == 1
    tags = [r for r in refs if "@" not in r]
    digests = {r.partition("@")[0] for r in refs if "@" in r}
    if len(tags) > 1:
        return False
    if not tags:
        return len(digests) == 1
    name = tags[0].rpartition(":")[0]
    return digests == {name}
