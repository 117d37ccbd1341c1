"""The local image store: images, tags, layers and container root filesystems.

Owns the `images` and `refs` tables and orchestrates the content store, the layer store and
the overlay snapshots. It emulates dockerd's image semantics (untag vs delete, conflicts,
prune, import, commit, save/load) and returns Docker-shaped dicts for inspect, list and
history; it knows nothing of HTTP or API versions.

Rows::

    images  id = "sha256:<hex of config>"  ->  {"config_json": <config exactly as hashed>,
                                               "parent": image id or "", "size": bytes,
                                               "last_tag_time": unix seconds or null}
    refs    id = "docker.io/library/busybox:latest" (normalised), name = image id

Every write (import, load, commit, tag, delete, prune) holds one asyncio lock, so a layer
being created by one operation is never collected by another. A failed operation runs the
collector, which deletes every layer (and blob) that no image and no container snapshot
references: nothing half-made survives. Layer reference counts are computed, not stored:
the chain IDs of every image plus the lowers recorded by every snapshot.
"""

from __future__ import annotations

import asyncio
import fnmatch
import gzip
import hashlib
import json
import logging
import secrets
import shutil
import tarfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dockyard._sys.mount import Mount
from dockyard.errdefs import Conflict, InvalidArgument, NotFound
from dockyard.events import EventBus
from dockyard.filters import labels_match
from dockyard.idmap import IdentityMapping
from dockyard.images import archive, reference
from dockyard.images.config import apply_changes, full_container_config
from dockyard.images.content import ContentStore
from dockyard.images.layers import LayerStore, chain_id, chain_ids
from dockyard.snapshots import diff as snapdiff
from dockyard.snapshots.overlay import OverlaySnapshotter
from dockyard.store import Store
from dockyard.timefmt import format_ts, now_rfc3339, parse_rfc3339, parse_time_param

__all__ = ["Image", "ImageNotFound", "ImageService"]

log = logging.getLogger(__name__)

DOCKER_VERSION = "27.5.0"
_CHUNK = 1 << 20


class ImageNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No such image: {ref}")
        self.ref = ref


@dataclass(frozen=True)
class Image:
    id: str
    config: dict[str, Any]
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...] = ()
    parent: str = ""
    size: int = 0
    last_tag_time: float | None = None
    config_bytes: bytes = field(default=b"", repr=False, compare=False)

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    @property
    def created(self) -> float:
        return _parse_created(self.config.get("created"))

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.config.get("config") or {}).get("Labels") or {})

    def __repr__(self) -> str:
        return f"<Image {self.short_id} {list(self.repo_tags)}>"


def _parse_created(value: Any) -> float:
    if not value:
        return 0.0
    try:
        return parse_rfc3339(str(value))
    except ValueError:
        return 0.0


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class ImageDeleteConflict(Conflict):
    def __init__(self, message: str, *, used: bool) -> None:
        super().__init__(message)
        self.used = used


@dataclass
class _Usage:
    running: list[str]
    stopped: list[str]


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
        self._store = store
        self._events = events
        self.data_root = data_root
        self.id_mapping = id_mapping  # `--userns-remap`: layers and snapshots hold shifted owners
        self.content = ContentStore(data_root / "blobs")
        self.layers = LayerStore(store, data_root / "layers", self.content, id_mapping)
        self.snapshots = OverlaySnapshotter(data_root / "snapshots", id_mapping.root_pair if id_mapping else None)
        self.tmp = data_root / "tmp" / "images"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = asyncio.Lock()
        self._usage_check: Callable[[str], list[str]] = lambda image_id: []
        self._running_ids: Callable[[str], list[str]] | None = None
        self._new_blobs: set[str] = set()  # layer blobs committed by the current write
        # Leftovers of a crash mid-operation: layers and blobs nothing refers to.
        freed = self._gc_sync()
        if freed:
            log.warning("removed %d bytes of unreferenced layers at startup", freed)

    # -- wiring ---------------------------------------------------------------------------

    def set_usage_check(self, fn: Callable[[str], list[str]]) -> None:
        """fn(image_id) -> IDs of containers using it (running or not)."""
        self._usage_check = fn

    def set_running_check(self, fn: Callable[[str], list[str]]) -> None:
        """fn(image_id) -> IDs of the running containers using it."""
        self._running_ids = fn

    def _usage(self, image_id: str) -> _Usage:
        users = [str(u) for u in self._usage_check(image_id) or []]
        running_set = set(self._running_ids(image_id) or []) if self._running_ids else set()
        running = [u for u in users if u in running_set]
        stopped = [u for u in users if u not in running_set]
        return _Usage(running, stopped)

    # -- lookups --------------------------------------------------------------------------

    def _refs_for(self, image_id: str) -> list[str]:
        """The image's references, oldest first (an indexed lookup on refs.name)."""
        return self._store.refs.ids_by_name(image_id)

    def _from_doc(self, image_id: str, doc: dict[str, Any]) -> Image:
        raw = doc["config_json"]
        refs = self._refs_for(image_id)
        tags = tuple(reference.familiar(r) for r in refs if "@" not in r)
        digests = tuple(reference.familiar(r) for r in refs if "@" in r)
        return Image(
            id=image_id,
            config=json.loads(raw),
            repo_tags=tags,
            repo_digests=digests,
            parent=doc.get("parent") or "",
            size=int(doc.get("size") or 0),
            last_tag_time=doc.get("last_tag_time"),
            config_bytes=raw.encode(),
        )

    def get(self, image_id: str) -> Image | None:
        doc = self._store.images.get(image_id)
        return self._from_doc(image_id, doc) if doc else None

    def parent_ids(self) -> set[str]:
        """The IDs that are some image's parent, from the table's in-memory mirror (cheap
        with many images: the builder asks after every build)."""
        return {str(doc["parent"]) for doc in self._store.images.snapshot_by_id().values() if doc.get("parent")}

    def all(self) -> list[Image]:
        docs = {r[0]: None for r in self._store.images.rows()}
        out = []
        for image_id in docs:
            img = self.get(image_id)
            if img is not None:
                out.append(img)
        return out

    def resolve(self, ref: str) -> Image:
        """name[:tag], name@digest, full ID, sha256:<hex>, or an unambiguous ID prefix."""
        if not ref:
            raise ImageNotFound(ref)
        if ref.startswith("sha256:"):
            hexpart = ref[7:]
            if reference.is_id_like(hexpart):
                ids = self._store.images.ids_with_prefix(ref)
                if len(ids) == 1:
                    return self.get(ids[0])  # type: ignore[return-value]
            raise ImageNotFound(ref)
        if len(ref) == 64 and reference.is_id_like(ref):
            img = self.get("sha256:" + ref)
            if img is None:
                raise ImageNotFound(ref)
            return img
        parsed = reference.parse_normalized(ref).with_default_tag()
        image_id = None
        row = self._store.refs.get(str(parsed))
        if row is not None:
            image_id = row["image"]
        elif parsed.digest:
            # name@digest also matches when the digest is the image (config) ID.
            cand = self.get(parsed.digest)
            if cand is not None:
                image_id = cand.id
        if image_id is None and reference.is_id_like(ref):
            ids = self._store.images.ids_with_prefix("sha256:" + ref)
            if len(ids) == 1:
                image_id = ids[0]
        if image_id is not None:
            img = self.get(image_id)
            if img is not None:
                return img
        raise ImageNotFound(ref)

    @staticmethod
    def familiar(ref: str) -> str:
        """How Docker shows a reference: `docker.io/library/bb:1` -> `bb:1` (unparsable: as is)."""
        try:
            return reference.parse_normalized(ref).familiar()
        except InvalidArgument:
            return ref

    def _is_id_ref(self, image_id: str, ref: str) -> bool:
        hexpart = ref.removeprefix("sha256:")
        return reference.is_id_like(ref) and image_id.removeprefix("sha256:").startswith(hexpart)

    def _children(self, image_id: str) -> list[str]:
        return [id for id, doc in self._store.images.snapshot_by_id().items() if doc.get("parent") == image_id]

    # -- views (Docker's JSON shapes) -------------------------------------------------------

    def lowers(self, image: Image) -> list[Path]:
        """Layer dirs of the image, top-first (overlay's lowerdir order)."""
        return [self.layers.diff_dir(c) for c in reversed(image.chain_ids)]

    def image_json(self, image: Image) -> dict[str, Any]:
        cfg = image.config
        lowers = self.lowers(image)
        graph: dict[str, str] = {}
        if lowers:
            top = lowers[0].parent
            graph = {"MergedDir": str(top / "merged"), "UpperDir": str(lowers[0]), "WorkDir": str(top / "work")}
            if len(lowers) > 1:
                graph["LowerDir"] = ":".join(str(p) for p in lowers[1:])
        out: dict[str, Any] = {
            "Id": image.id,
            "RepoTags": list(image.repo_tags),
            "RepoDigests": list(image.repo_digests),
            "Parent": image.parent,
            "Comment": cfg.get("comment", ""),
            "Created": cfg.get("created") or "0001-01-01T00:00:00Z",
            "Container": cfg.get("container", ""),
            "ContainerConfig": full_container_config(cfg.get("container_config")),
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": full_container_config(cfg.get("config")),
            "Architecture": cfg.get("architecture", "amd64"),
            "Os": cfg.get("os", "linux"),
            "Size": image.size,
            "VirtualSize": image.size,
            "GraphDriver": {"Name": "overlay2", "Data": graph},
            "RootFS": {"Type": "layers", "Layers": image.diff_ids},
            "Metadata": {
                "LastTagTime": format_ts(image.last_tag_time) if image.last_tag_time else "0001-01-01T00:00:00Z"
            },
        }
        if cfg.get("variant"):
            out["Variant"] = cfg["variant"]
        return out

    def image_summary(self, image: Image, *, containers: int = -1) -> dict[str, Any]:
        labels = image.labels
        return {
            "Id": image.id,
            "ParentId": image.parent,
            "RepoTags": list(image.repo_tags),
            "RepoDigests": list(image.repo_digests),
            "Created": int(image.created),
            "Size": image.size,
            "SharedSize": -1,
            "VirtualSize": image.size,
            "Labels": labels or None,
            "Containers": containers,
        }

    def list_images(
        self, *, all: bool = False, filters: dict[str, list[str]] | None = None, container_counts: bool = False
    ) -> list[dict[str, Any]]:
        f = filters or {}
        for key in f:
            if key not in ("dangling", "label", "reference", "before", "since", "until"):
                raise InvalidArgument(f"invalid filter '{key}'")
        images = self.all()
        parents = {img.parent for img in images if img.parent}
        dangling_filter: bool | None = None
        if "dangling" in f:
            vals = {v.lower() for v in f["dangling"]}
            if not vals <= {"true", "false", "1", "0"}:
                raise InvalidArgument(f"invalid filter 'dangling={','.join(f['dangling'])}'")
            dangling_filter = bool(vals & {"true", "1"})
        before = self._filter_time(f, "before")
        since = self._filter_time(f, "since")
        until = self._until(f)
        out = []
        for img in images:
            dangling = not img.repo_tags and not img.repo_digests
            if not all and dangling and img.id in parents:
                continue  # intermediate images are hidden unless all=1, also from dangling=true (moby)
            if dangling_filter is not None and dangling != dangling_filter:
                continue
            if before is not None and not img.created < before:
                continue
            if since is not None and not img.created > since:
                continue
            if until is not None and not img.created < until:
                continue
            if "label" in f and not labels_match(img.labels, f["label"]):
                continue
            tags, digests = list(img.repo_tags), list(img.repo_digests)
            if "reference" in f:  # dockerd lists only the references that match
                tags = [t for t in tags if any(_ref_match(p, t) for p in f["reference"])]
                digests = [d for d in digests if any(_ref_match(p, d) for p in f["reference"])]
                if not tags and not digests:
                    continue
            summary = self.image_summary(
                img, containers=len(self._usage_check(img.id) or []) if container_counts else -1
            )
            summary["RepoTags"] = tags
            summary["RepoDigests"] = digests
            out.append(summary)
        out.sort(key=lambda s: s["Created"], reverse=True)
        return out

    def _filter_time(self, f: dict[str, list[str]], key: str) -> float | None:
        if key not in f:
            return None
        vals = f[key]
        return min(self.resolve(v).created for v in vals) if key == "before" else max(
            self.resolve(v).created for v in vals
        )

    def _until(self, f: dict[str, list[str]]) -> float | None:
        if "until" not in f:
            return None
        try:
            return min(parse_time_param(v) for v in f["until"])
        except ValueError:
            raise InvalidArgument(f"invalid filter 'until={f['until'][0]}'") from None

    def history(self, image: Image) -> list[dict[str, Any]]:
        hist = list(image.config.get("history") or [])
        diff_ids = image.diff_ids
        chains = image.chain_ids
        # The image IDs of local ancestors, by the number of layers they have.
        ancestors: dict[int, Image] = {}
        cur: Image | None = image
        while cur is not None:
            ancestors.setdefault(len(cur.config.get("history") or []), cur)
            cur = self.get(cur.parent) if cur.parent else None
        rows = []
        layer_i = 0
        for i, h in enumerate(hist):
            size = 0
            if not h.get("empty_layer") and layer_i < len(diff_ids):
                layer = self.layers.get(chains[layer_i])
                size = layer.size if layer else 0
                layer_i += 1
            anc = ancestors.get(i + 1)
            rows.append(
                {
                    "Id": anc.id if anc else "<missing>",
                    "Created": int(_parse_created(h.get("created"))),
                    "CreatedBy": h.get("created_by", ""),
                    "Tags": list(anc.repo_tags) if anc and anc.repo_tags else None,
                    "Size": size,
                    "Comment": h.get("comment", ""),
                }
            )
        if not rows:
            rows.append(
                {
                    "Id": image.id,
                    "Created": int(image.created),
                    "CreatedBy": "",
                    "Tags": list(image.repo_tags) or None,
                    "Size": image.size,
                    "Comment": image.config.get("comment", ""),
                }
            )
        rows.reverse()
        return rows

    # -- events ---------------------------------------------------------------------------

    def _event(self, action: str, image: Image | str, name: str | None = None) -> None:
        if isinstance(image, Image):
            image_id, labels = image.id, image.labels
        else:
            image_id, labels = image, {}
        attrs = {**labels, "name": name or image_id}
        self._events.publish("image", action, image_id, attrs)

    # -- tags -----------------------------------------------------------------------------

    @staticmethod
    def parse_target(repo: str, tag: str | None) -> reference.Reference:
        """A tag target: `repo` (may itself hold `:tag`) plus an optional tag."""
        if not repo:
            raise InvalidArgument("repository name must have at least one component")
        ref = reference.parse_normalized(repo)
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        if tag:
            ref = ref.with_tag(tag)
        return ref.with_default_tag()

    def _set_ref_locked(self, ref: reference.Reference, image_id: str) -> str | None:
        """Point ref at image_id; returns the image it pointed at before (if another)."""
        key = str(ref)
        old = self._store.refs.get(key)
        with self._store.transaction():
            self._store.refs.put(key, {"ref": key, "image": image_id}, name=image_id)
            doc = self._store.images.get(image_id)
            if doc is not None:
                doc["last_tag_time"] = time.time()
                self._store.images.put(image_id, doc)
        prev = old["image"] if old else None
        return prev if prev != image_id else None

    async def tag(self, source: str, repo: str, tag: str | None) -> Image:
        async with self._lock:
            img = self.resolve(source)
            target = self.parse_target(repo, tag)
            self._set_ref_locked(target, img.id)
            self._event("tag", img, target.familiar())
            return self.get(img.id)  # type: ignore[return-value]

    # -- delete / prune -------------------------------------------------------------------

    async def delete(self, ref: str, *, force: bool = False, noprune: bool = False) -> list[dict[str, str]]:
        async with self._lock:
            records: list[dict[str, str]] = []
            try:
                self._delete_locked(ref, force=force, prune=not noprune, records=records)
            finally:
                if any("Deleted" in r for r in records):
                    await asyncio.to_thread(self._gc_sync)
            return records

    def _delete_locked(self, ref: str, *, force: bool, prune: bool, records: list[dict[str, str]]) -> None:
        """dockerd's ImageDelete (daemon/images/image_delete.go), step for step."""
        img = self.resolve(ref)
        repo_refs = self._refs_for(img.id)
        removed_repo_ref = False
        if not self._is_id_ref(img.id, ref):
            parsed = reference.parse_normalized(ref).with_default_tag()
            if not force and _is_single_reference(repo_refs):
                usage = self._usage(img.id)
                users = usage.running + usage.stopped
                if users:
                    raise Conflict(
                        f'conflict: unable to remove repository reference "{ref}" (must force) - container '
                        f"{_short(users[0])} is using its referenced image {img.short_id}"
                    )
            key = str(parsed)
            if self._store.refs.get(key) is None:
                raise ImageNotFound(ref)
            self._store.refs.delete(key)
            records.append({"Untagged": parsed.familiar()})
            self._event("untag", img)
            if parsed.digest is None:
                # dockerd: with the repository's last tag gone, its digest references go too
                same_repo = [r for r in self._refs_for(img.id) if r.partition("@")[0].rpartition(":")[0]
                             == parsed.name or r.partition("@")[0] == parsed.name]
                if not any("@" not in r for r in same_repo):
                    for r in same_repo:
                        self._store.refs.delete(r)
                        records.append({"Untagged": reference.familiar(r)})
                        self._event("untag", img)
            repo_refs = self._refs_for(img.id)
            if repo_refs:
                return
            removed_repo_ref = True
        else:
            if _is_single_reference(repo_refs):
                self._check_conflict(img, hard_only=force, ignore_refs=True)
                for r in repo_refs:
                    self._store.refs.delete(r)
                    records.append({"Untagged": reference.familiar(r)})
                    self._event("untag", img)
        self._delete_helper(img.id, records, force=force, prune=prune, quiet=removed_repo_ref)

    def _check_conflict(self, img: Image, *, hard_only: bool, ignore_refs: bool = False) -> None:
        def fail(msg: str, hard: bool, used: bool = False) -> None:
            how = "cannot be forced" if hard else "must be forced"
            raise ImageDeleteConflict(f"conflict: unable to delete {img.short_id} ({how}) - {msg}", used=used)

        if self._children(img.id):
            fail("image has dependent child images", True)
        usage = self._usage(img.id)
        if usage.running:
            fail(f"image is being used by running container {_short(usage.running[0])}", True, True)
        if hard_only:
            return
        if not ignore_refs and self._refs_for(img.id):
            fail("image is referenced in multiple repositories", False)
        if usage.stopped:
            fail(f"image is being used by stopped container {_short(usage.stopped[0])}", False, True)

    def _delete_helper(
        self, image_id: str, records: list[dict[str, str]], *, force: bool, prune: bool, quiet: bool
    ) -> None:
        img = self.get(image_id)
        if img is None:
            return
        try:
            self._check_conflict(img, hard_only=force)
        except ImageDeleteConflict as conflict:
            dangling = not self._refs_for(image_id) and not self._children(image_id)
            if quiet and (not dangling or conflict.used):
                return  # dockerd: stop quietly unless the user would be left with a dangling image
            raise
        for r in self._refs_for(image_id):
            self._store.refs.delete(r)
            records.append({"Untagged": reference.familiar(r)})
            self._event("untag", img)
        with self._store.transaction():
            self._store.images.delete(image_id)
        self._event("delete", img.id)  # dockerd: no labels on `delete`, unlike `untag`
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
        until = self._until(f)
        async with self._lock:
            before = self._layer_bytes()
            records: list[dict[str, str]] = []
            images = self.all()
            parents = {img.parent for img in images if img.parent}
            for img in images:
                if self.get(img.id) is None:
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
                        for r in self._refs_for(img.id):
                            self._delete_locked(reference.familiar(r), force=False, prune=True, records=records)
                    else:
                        self._delete_locked(img.id, force=False, prune=True, records=records)
                except (Conflict, NotFound) as err:
                    log.debug("prune skipped %s: %s", img.short_id, err)
            await asyncio.to_thread(self._gc_sync)
            reclaimed = max(0, before - self._layer_bytes())
        self._events.publish("image", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ImagesDeleted": records or None, "SpaceReclaimed": reclaimed}

    def _layer_bytes(self) -> int:
        total = 0
        for chain in self.layers.ids():
            layer = self.layers.get(chain)
            total += layer.size if layer else 0
        return total

    # -- garbage collection ----------------------------------------------------------------

    def _referenced_chains(self) -> set[str]:
        refs: set[str] = set()
        for img in self.all():
            refs.update(img.chain_ids)
        for key in self.snapshots.keys():  # noqa: SIM118 (a snapshotter, not a dict)
            lower = self.snapshots.root / key / "lower"
            try:
                refs.update(line for line in lower.read_text().split() if line)
            except FileNotFoundError:
                pass
        # The builder's cache entries pin their layers (read from the store, not a hook, so
        # the startup collection already honours them); `builder prune` drops the rows.
        for doc in self._store.build_cache.all():
            refs.update(doc.get("chains") or [])
        return refs

    def _gc_sync(self) -> int:
        """Remove layers and blobs nothing references (call with the lock held)."""
        keep = self._referenced_chains()
        freed = 0
        for chain in self.layers.ids():
            if chain not in keep:
                freed += self.layers.remove(chain)
        # Layer removal drops its tar blob. Beyond that, only blobs this service wrote
        # during the failed operation go: the content store may hold other kinds of blob
        # (manifests, compressed layers of a pull) that are not ours to judge.
        diff_ids = {doc["diff_id"] for doc in self._store.layers.all()}
        for d in self._new_blobs:
            if d not in diff_ids:
                self.content.delete(d)
        self._new_blobs.clear()
        return freed

    async def gc(self) -> int:
        async with self._lock:
            return await asyncio.to_thread(self._gc_sync)

    # -- import ---------------------------------------------------------------------------

    async def spool(self, chunks: AsyncIterator[bytes]) -> Path:
        """Write a request body to a temporary file (removed by the caller)."""
        path = self.tmp / f"upload-{secrets.token_hex(8)}"
        f = await asyncio.to_thread(open, path, "wb")
        try:
            buf: list[bytes] = []
            n = 0
            async for chunk in chunks:
                buf.append(chunk)
                n += len(chunk)
                if n >= _CHUNK:
                    data = b"".join(buf)
                    buf, n = [], 0
                    await asyncio.to_thread(f.write, data)
            if buf:
                await asyncio.to_thread(f.write, b"".join(buf))
        except BaseException:
            f.close()
            path.unlink(missing_ok=True)
            raise
        f.close()
        return path

    def _ingest_layer_sync(self, raw: Any, expected: str | None = None) -> str:
        """Decompress raw into the content store; returns the diff ID."""
        w = self.content.writer()
        try:
            src = archive.decompressed(raw)
            try:
                while chunk := src.read(_CHUNK):
                    w.write(chunk)
            except (OSError, EOFError, gzip.BadGzipFile) as err:
                raise InvalidArgument(f"invalid layer data: {err}") from None
            existed = expected is not None and self.content.exists(expected)
            digest = w.commit(expected=expected)
            if not existed:
                self._new_blobs.add(digest)
            return digest
        except BaseException:
            w.abort()
            raise

    def _create_layer_sync(self, parent: str | None, diff_id: str) -> None:
        try:
            self.layers.create(parent, diff_id)
        except tarfile.TarError as err:
            raise InvalidArgument(f"invalid tar archive: {err}") from None

    async def import_image(
        self,
        source: Path,
        *,
        repo: str | None = None,
        tag: str | None = None,
        changes: list[str] | None = None,
        message: str = "",
        src: str = "-",
        platform: str | None = None,
    ) -> Image:
        """`docker import`: one layer from a root filesystem tarball (plain or compressed)."""
        target = self.parse_target(repo, tag) if repo else None
        changes = [c for c in (changes or []) if c.strip()]
        cfg_part = apply_changes({}, changes)
        os_name, _, arch = (platform or "linux/amd64").partition("/")
        async with self._lock:
            try:

                def work() -> str:
                    with open(source, "rb") as f:
                        diff_id = self._ingest_layer_sync(f)
                    self._create_layer_sync(None, diff_id)
                    return diff_id

                diff_id = await asyncio.to_thread(work)
                created = now_rfc3339()
                comment = message or f"Imported from {src}"
                config: dict[str, Any] = {
                    "architecture": arch or "amd64",
                    "comment": comment,
                    "config": cfg_part,
                    "created": created,
                    "docker_version": DOCKER_VERSION,
                    "history": [{"created": created, "comment": comment}],
                    "os": os_name or "linux",
                    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                }
                img = self._put_image_locked(_dumps(config), parent="")
                if target is not None:  # dockerd tags first, then logs the import
                    self._set_ref_locked(target, img.id)
                    self._event("tag", img, target.familiar())
                self._event("import", img)
            except BaseException:
                await asyncio.to_thread(self._gc_sync)
                raise
            return self.get(img.id)  # type: ignore[return-value]

    def _put_image_locked(self, config_bytes: bytes, *, parent: str) -> Image:
        image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        config = json.loads(config_bytes)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        size = 0
        for chain in chain_ids(diff_ids):
            layer = self.layers.get(chain)
            if layer is None:
                raise InvalidArgument(f"layer {chain} of image {image_id} is missing")
            size += layer.size
        existing = self._store.images.get(image_id)
        doc = {
            "config_json": config_bytes.decode(),
            "parent": parent or (existing or {}).get("parent", ""),
            "size": size,
            "last_tag_time": (existing or {}).get("last_tag_time"),
        }
        self._store.images.put(image_id, doc, created=_parse_created(config.get("created")) or time.time())
        return self._from_doc(image_id, doc)

    # -- load / save ----------------------------------------------------------------------

    async def load(self, source: Path, on_layer: Callable[[str, int], None] | None = None) -> list[str]:
        """`docker load`: returns the lines dockerd prints ("Loaded image: ...").

        on_layer(diff_id, size) is called on the event loop for each layer actually loaded
        (dockerd's "Loading layer" progress)."""
        loop = asyncio.get_running_loop()

        def layer_loaded(diff_id: str, size: int) -> None:
            if on_layer is not None:
                loop.call_soon_threadsafe(on_layer, diff_id, size)

        async with self._lock:
            try:
                plans = await asyncio.to_thread(self._load_layers_sync, source, layer_loaded)
                lines: list[str] = []
                loaded: list[Image] = []
                with self._store.transaction():
                    for config_bytes, tags in plans:
                        img = self._put_image_locked(config_bytes, parent="")
                        loaded.append(img)
                        if not tags:
                            lines.append(f"Loaded image ID: {img.id}\n")
                        for t in tags:
                            ref = t
                            prev = self._set_ref_locked(ref, img.id)
                            if prev is not None:
                                lines.append(
                                    f"The image {ref.familiar()} already exists, renaming the old one "
                                    f"with ID {prev} to empty string\n"
                                )
                            lines.append(f"Loaded image: {ref.familiar()}\n")
            except BaseException:
                await asyncio.to_thread(self._gc_sync)
                raise
            for img in loaded:
                self._event("load", img)
            return lines

    def _load_layers_sync(
        self, source: Path, layer_loaded: Callable[[str, int], None]
    ) -> list[tuple[bytes, list[reference.Reference]]]:
        plain = source
        with open(source, "rb") as f:
            head = f.read(6)
        if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
            plain = source.with_name(source.name + ".tar")
            with open(source, "rb") as f, open(plain, "wb") as dst:
                shutil.copyfileobj(archive.decompressed(f), dst, _CHUNK)
        try:
            try:
                tf = tarfile.open(plain, "r:")
            except tarfile.TarError as err:
                raise InvalidArgument(f"invalid archive: {err}") from None
            with tf:
                items = archive.read_archive(tf)
                out: list[tuple[bytes, list[reference.Reference]]] = []
                for item in items:
                    try:
                        config = json.loads(item.config_bytes)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        raise InvalidArgument("invalid archive: image config is not JSON") from None
                    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
                    if len(diff_ids) != len(item.layers):
                        raise InvalidArgument(
                            f"invalid manifest, layers length mismatch: expected {len(diff_ids)}, "
                            f"got {len(item.layers)}"
                        )
                    tags = []
                    for t in item.tags:
                        try:
                            tags.append(reference.parse_normalized(t).with_default_tag())
                        except InvalidArgument:
                            raise InvalidArgument(f"invalid archive: invalid reference {t!r}") from None
                    parent: str | None = None
                    for diff_id, src in zip(diff_ids, item.layers):
                        chain = chain_id(parent, diff_id)
                        if not self.layers.exists(chain):
                            size = 0
                            if not self.content.exists(diff_id):
                                with archive.open_member(tf, src.member) as raw:
                                    hashing = archive.HashingReader(raw)
                                    self._ingest_layer_sync(hashing, expected=diff_id)
                                    hashing.drain()
                                    size = hashing.size
                                if src.digest and hashing.digest != src.digest:
                                    raise InvalidArgument(
                                        f"invalid archive: layer digest mismatch for {src.digest}"
                                    )
                            self._create_layer_sync(parent, diff_id)
                            layer_loaded(diff_id, size)
                        parent = chain
                    out.append((item.config_bytes, tags))
                return out
        finally:
            if plain != source:
                plain.unlink(missing_ok=True)

    def save_items(self, names: list[str]) -> list[archive.SaveItem]:
        """Resolve `docker save` arguments (a bare repository name means all its tags)."""
        by_id: dict[str, tuple[Image, list[str]]] = {}
        for name in names:
            refs: list[str] = []
            img: Image | None = None
            if not reference.is_id_like(name.removeprefix("sha256:")) or self._store.refs.get(
                _maybe_norm(name)
            ):
                try:
                    parsed = reference.parse_normalized(name)
                except InvalidArgument:
                    parsed = None
                if parsed is not None and parsed.tag is None and parsed.digest is None:
                    prefix = parsed.name + ":"
                    matching = [r[0] for r in self._store.refs.rows() if r[0].startswith(prefix)]
                    for r in sorted(matching):
                        row = self._store.refs.get(r)
                        assert row is not None
                        cur = self.get(row["image"])
                        if cur is not None:
                            by_id.setdefault(cur.id, (cur, []))[1].append(r)
                    if matching:
                        continue
                if parsed is not None and parsed.tag is not None:
                    img = self.resolve(name)
                    refs = [str(parsed)]
            if img is None:
                img = self.resolve(name)
            entry = by_id.setdefault(img.id, (img, []))
            for r in refs:
                if r not in entry[1]:
                    entry[1].append(r)
        items = []
        for img, refs in by_id.values():
            items.append(
                archive.SaveItem(
                    image_id=img.id,
                    config_bytes=img.config_bytes,
                    diff_ids=tuple(img.diff_ids),
                    tags=tuple(refs),
                    familiar_tags=tuple(reference.familiar(r) for r in refs),
                    created=img.created or time.time(),
                )
            )
        return items

    def write_save(self, items: list[archive.SaveItem], out: IO[bytes]) -> None:
        """Blocking: stream the tarball; run in a worker thread."""
        archive.write_archive(out, items, self.content.path)

    def publish_saved(self, items: list[archive.SaveItem]) -> None:
        for it in items:
            self._event("save", it.image_id)

    # -- container root filesystems --------------------------------------------------------

    def prepare_rootfs(self, key: str, image_id: str) -> Mount:
        img = self.get(image_id) or self.resolve(image_id)
        chains = img.chain_ids
        for c in chains:
            if not self.layers.exists(c):
                raise NotFound(f"layer {c} of image {img.short_id} does not exist")
        m = self.snapshots.prepare(key, [self.layers.link(c) for c in reversed(chains)])
        # overlay2 keeps a "lower" file per layer; ours records which layers this snapshot pins.
        lower = self.snapshots.root / key / "lower"
        lower.write_text("".join(c + "\n" for c in chains))
        return m

    def remove_rootfs(self, key: str) -> None:
        self.snapshots.remove(key)

    def upper_dir(self, key: str) -> Path:
        return self.snapshots.upper(key)

    def _snapshot_lowers(self, key: str) -> list[Path]:
        try:
            chains = (self.snapshots.root / key / "lower").read_text().split()
        except FileNotFoundError:
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
        target = self.parse_target(repo, tag) if repo else None
        changes = [c for c in (changes or []) if c.strip()]
        new_cfg = apply_changes(container_config, changes)
        async with self._lock:
            parent = self.get(parent_image_id) or self.resolve(parent_image_id)
            upper = self.upper_dir(key)
            try:

                def work() -> tuple[str, bool]:
                    w = self.content.writer()
                    try:
                        if upper.is_dir():
                            count = snapdiff.write_layer_tar(upper, w, self.id_mapping)  # type: ignore[arg-type]
                        else:
                            count = 0
                        if count == 0:
                            w.abort()
                            return "", True
                        diff_id = w.commit()
                        self._new_blobs.add(diff_id)
                    except BaseException:
                        w.abort()
                        raise
                    parent_chain = parent.chain_ids[-1] if parent.chain_ids else None
                    self._create_layer_sync(parent_chain, diff_id)
                    return diff_id, False

                diff_id, empty = await asyncio.to_thread(work)
                created = now_rfc3339()
                pc = parent.config
                hist_entry: dict[str, Any] = {"created": created}
                if author:
                    hist_entry["author"] = author
                hist_entry["created_by"] = " ".join(container_config.get("Cmd") or [])
                if comment:
                    hist_entry["comment"] = comment
                if empty:
                    hist_entry["empty_layer"] = True
                config: dict[str, Any] = {
                    "architecture": pc.get("architecture", "amd64"),
                    "author": author,
                    "config": new_cfg,
                    "container": container_id,
                    "container_config": container_config,
                    "created": created,
                    "docker_version": DOCKER_VERSION,
                    "history": [*(pc.get("history") or []), hist_entry],
                    "os": pc.get("os", "linux"),
                    "rootfs": {"type": "layers", "diff_ids": parent.diff_ids + ([] if empty else [diff_id])},
                }
                if comment:
                    config["comment"] = comment
                if not author:
                    del config["author"]
                img = self._put_image_locked(_dumps(config), parent=parent.id)
                if target is not None:
                    self._set_ref_locked(target, img.id)
                    self._event("tag", img, target.familiar())
            except BaseException:
                await asyncio.to_thread(self._gc_sync)
                raise
            return self.get(img.id)  # type: ignore[return-value]

    async def create_image(
        self, config: dict[str, Any], *, parent: str = "", layer_dir: Path | None = None
    ) -> Image:
        """The builder's commit: `config` is the complete image config, except that a
        non-empty `layer_dir` (an overlay upper dir) adds one layer on top of
        `config["rootfs"]["diff_ids"]`; an empty one marks the last history entry
        `empty_layer`. Nothing is tagged."""
        config = json.loads(json.dumps(config))
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        async with self._lock:
            try:
                if layer_dir is not None:
                    upper = layer_dir

                    def work() -> str:
                        w = self.content.writer()
                        try:
                            count = snapdiff.write_layer_tar(upper, w, self.id_mapping) if upper.is_dir() else 0  # type: ignore[arg-type]
                            if count == 0:
                                w.abort()
                                return ""
                            diff_id = w.commit()
                            self._new_blobs.add(diff_id)
                        except BaseException:
                            w.abort()
                            raise
                        self._create_layer_sync(chain_ids(diff_ids)[-1] if diff_ids else None, diff_id)
                        return diff_id

                    diff_id = await asyncio.to_thread(work)
                    if diff_id:
                        diff_ids.append(diff_id)
                    elif config.get("history"):
                        config["history"][-1]["empty_layer"] = True
                config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
                img = self._put_image_locked(_dumps(config), parent=parent)
            except BaseException:
                await asyncio.to_thread(self._gc_sync)
                raise
            return self.get(img.id)  # type: ignore[return-value]

    # -- disk usage -----------------------------------------------------------------------

    def disk_usage(self) -> dict[str, Any]:
        """For /system/df: image summaries (with container counts and SharedSize, the bytes
        of layers other images use too: the CLI counts an image in use as size - shared)."""
        images = self.list_images(all=True, container_counts=True)
        chains = {img.id: img.chain_ids for img in self.all()}
        users: dict[str, int] = {}
        for ids in chains.values():
            for c in set(ids):
                users[c] = users.get(c, 0) + 1
        sizes: dict[str, int] = {}
        for c in users:
            layer = self.layers.get(c)
            sizes[c] = layer.size if layer else 0
        for summary in images:
            summary["SharedSize"] = sum(sizes[c] for c in set(chains.get(summary["Id"], [])) if users[c] > 1)
        return {"LayersSize": self._layer_bytes(), "Images": images}

    def statistics(self) -> dict[str, int]:
        return {"images": len(self._store.images.rows()), "layers": len(self.layers.ids())}


def _maybe_norm(name: str) -> str:
    try:
        return str(reference.parse_normalized(name).with_default_tag())
    except InvalidArgument:
        return name


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


def _ref_match(pattern: str, familiar_ref: str) -> bool:
    """Docker's reference filter (FamiliarMatch): a glob against the familiar name:tag or
    name@digest, or against the name alone."""
    name = familiar_ref.partition("@")[0] if "@" in familiar_ref else familiar_ref.rpartition(":")[0]
    return fnmatch.fnmatchcase(familiar_ref, pattern) or fnmatch.fnmatchcase(name, pattern)

