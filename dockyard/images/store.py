"""The image store: the `images` and `refs` tables over the content and layer stores, and
the one way to write them, a transaction (`ImageWrite`) that pull, push, load, import,
commit and build all use.

Rows::

    images  id = "sha256:<hex of config>"  ->  {"config_json": <config exactly as hashed>,
                                               "parent": image id or "", "size": bytes,
                                               "last_tag_time": unix seconds or null}
    refs    id = "docker.io/library/busybox:latest" (normalised), name = image id

Flow::

    async with store.writer() as w:                 # nothing is locked yet
        diff_id = await w.ingest(fileobj)           # blob verified by digest (worker thread)
        chain = await w.create_layer(None, diff_id) # extracted (worker thread), pinned
        image_id = w.put_image(config_bytes)        # staged
        w.set_ref(ref, image_id)                    # staged
        done = await w.commit()                     # short: lock, one SQL transaction, unlock
    # an exception (or leaving without commit) aborts: what the write made goes

Locking. `lock` (one asyncio lock) is held only around metadata commits (a write's commit,
tag, untag/delete) and the collector, never while a client is served or a layer is
downloaded, decompressed or extracted: a slow pull cannot hold up an import, a commit or
an rmi. What keeps the collector off a layer that is being made is a pin: a writer pins a
layer key (chain ID) before it creates the layer and a blob before it needs it, and holds
the pins until its image rows are committed (then the images reference them) or it
aborts. The collector lists the layers first and reads references and pins after, under
the lock, so a layer it sees either is pinned or was made by a write that has ended.

Invariants kept from the single-lock store: a failed write leaves nothing (abort runs the
collector); every blob is verified by digest before it is committed (content.py); layers
are collected by references (the chain IDs of every image, every snapshot's pins and the
build cache's rows), computed, never counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import logging
import shutil
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dockyard.errdefs import InvalidArgument
from dockyard.events import EventBus
from dockyard.idmap import IdentityMapping
from dockyard.images import archive, reference
from dockyard.images.content import ContentStore
from dockyard.images.layers import LayerStore, chain_id, chain_ids
from dockyard.images.model import Image, ImageNotFound, parse_created
from dockyard.snapshots import diff as snapdiff
from dockyard.snapshots.overlay import OverlaySnapshotter
from dockyard.store import Store

__all__ = ["Committed", "ImageStore", "ImageWrite"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
T = TypeVar("T")


class ImageStore:
    """Lookups (`get`, `resolve`, `refs_for`, ...), the write transaction (`writer`), the
    short locked edits of references (`set_refs`, `delete_ref`, `delete_image` under
    `lock`) and the collector (`collect`)."""

    def __init__(
        self, store: Store, data_root: Path, events: EventBus, id_mapping: IdentityMapping | None = None
    ) -> None:
        self._db = store
        self._events = events
        self.id_mapping = id_mapping  # `--userns-remap`: layers and snapshots hold shifted owners
        self.content = ContentStore(data_root / "blobs")
        self.layers = LayerStore(store, data_root / "layers", self.content, id_mapping)
        self.snapshots = OverlaySnapshotter(
            data_root / "snapshots", id_mapping.root_pair if id_mapping else None
        )
        self.tmp = data_root / "tmp" / "images"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        # held around metadata commits and collection only (see the module docstring)
        self.lock = asyncio.Lock()
        self._pin_guard = threading.Lock()  # pins change on the loop and in worker threads
        self._chain_pins: Counter[str] = Counter()
        self._blob_pins: Counter[str] = Counter()
        # Leftovers of a crash mid-operation: layers and blobs nothing refers to.
        freed = self.collect_sync()
        if freed:
            log.warning("removed %d bytes of unreferenced layers at startup", freed)

    # -- lookups ------------------------------------------------------------------------

    def refs_for(self, image_id: str) -> list[str]:
        """The image's references, oldest first (an indexed lookup on refs.name)."""
        return self._db.refs.ids_by_name(image_id)

    def ref_target(self, ref: str) -> str | None:
        """The image a normalised reference points at."""
        row = self._db.refs.get(ref)
        return str(row["image"]) if row is not None else None

    def refs_with_prefix(self, prefix: str) -> list[str]:
        return [r[0] for r in self._db.refs.rows() if r[0].startswith(prefix)]

    def _from_doc(self, image_id: str, doc: dict[str, Any]) -> Image:
        raw = doc["config_json"]
        refs = self.refs_for(image_id)
        return Image(
            id=image_id,
            config=json.loads(raw),
            repo_tags=tuple(reference.familiar(r) for r in refs if "@" not in r),
            repo_digests=tuple(reference.familiar(r) for r in refs if "@" in r),
            parent=doc.get("parent") or "",
            size=int(doc.get("size") or 0),
            last_tag_time=doc.get("last_tag_time"),
            config_bytes=raw.encode(),
        )

    def get(self, image_id: str) -> Image | None:
        doc = self._db.images.get(image_id)
        return self._from_doc(image_id, doc) if doc else None

    def all(self) -> list[Image]:
        out = []
        for image_id in {r[0]: None for r in self._db.images.rows()}:
            img = self.get(image_id)
            if img is not None:
                out.append(img)
        return out

    def count(self) -> int:
        return len(self._db.images.rows())

    def parent_ids(self) -> set[str]:
        """The IDs that are some image's parent, from the table's in-memory mirror (cheap
        with many images: the builder asks after every build)."""
        return {str(doc["parent"]) for doc in self._db.images.snapshot_by_id().values() if doc.get("parent")}

    def children(self, image_id: str) -> list[str]:
        return [i for i, doc in self._db.images.snapshot_by_id().items() if doc.get("parent") == image_id]

    def resolve(self, ref: str) -> Image:
        """name[:tag], name@digest, full ID, sha256:<hex>, or an unambiguous ID prefix."""
        if not ref:
            raise ImageNotFound(ref)
        if ref.startswith("sha256:"):
            if reference.is_id_like(ref[7:]):
                ids = self._db.images.ids_with_prefix(ref)
                if len(ids) == 1 and (img := self.get(ids[0])) is not None:
                    return img
            raise ImageNotFound(ref)
        if len(ref) == 64 and reference.is_id_like(ref):
            img = self.get("sha256:" + ref)
            if img is None:
                raise ImageNotFound(ref)
            return img
        parsed = reference.parse_normalized(ref).with_default_tag()
        image_id = self.ref_target(str(parsed))
        if image_id is None and parsed.digest:
            # name@digest also matches when the digest is the image (config) ID.
            cand = self.get(parsed.digest)
            if cand is not None:
                image_id = cand.id
        if image_id is None and reference.is_id_like(ref):
            ids = self._db.images.ids_with_prefix("sha256:" + ref)
            if len(ids) == 1:
                image_id = ids[0]
        if image_id is not None:
            img = self.get(image_id)
            if img is not None:
                return img
        raise ImageNotFound(ref)

    def layer_bytes(self) -> int:
        total = 0
        for chain in self.layers.ids():
            layer = self.layers.get(chain)
            total += layer.size if layer else 0
        return total

    # -- events -------------------------------------------------------------------------

    def publish(self, action: str, image: Image | str, name: str | None = None) -> None:
        """An `image` event, with the image's labels as attributes (as dockerd sends them)."""
        if isinstance(image, Image):
            image_id, labels = image.id, image.labels
        else:
            image_id, labels = image, {}
        self._events.publish("image", action, image_id, {**labels, "name": name or image_id})

    def publish_raw(self, action: str, actor: str, attrs: dict[str, str]) -> None:
        self._events.publish("image", action, actor, attrs)

    # -- writes -------------------------------------------------------------------------

    def writer(self) -> ImageWrite:
        return ImageWrite(self)

    async def set_refs(self, refs: Iterable[reference.Reference], image_id: str) -> None:
        """Point each reference at an existing image (a short locked edit)."""
        async with self.lock:
            if self._db.images.get(image_id) is None:  # deleted while we waited for the lock
                raise ImageNotFound(image_id)
            with self._db.transaction():
                for ref in refs:
                    self.set_ref_locked(ref, image_id)

    def set_ref_locked(self, ref: reference.Reference, image_id: str) -> str | None:
        """Point ref at image_id (hold `lock`); returns the image it pointed at before (if another)."""
        key = str(ref)
        old = self._db.refs.get(key)
        with self._db.transaction():
            self._db.refs.put(key, {"ref": key, "image": image_id}, name=image_id)
            doc = self._db.images.get(image_id)
            if doc is not None:
                doc["last_tag_time"] = time.time()
                self._db.images.put(image_id, doc)
        prev = old["image"] if old else None
        return prev if prev != image_id else None

    def delete_ref_locked(self, key: str) -> bool:
        """Drop a normalised reference (hold `lock`); False when there was none."""
        if self._db.refs.get(key) is None:
            return False
        self._db.refs.delete(key)
        return True

    def delete_image_locked(self, image_id: str) -> None:
        """Drop an image row (hold `lock`; its layers go with the next collection)."""
        with self._db.transaction():
            self._db.images.delete(image_id)

    def _put_image_locked(self, config_bytes: bytes, *, parent: str) -> Image:
        image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        config = json.loads(config_bytes)
        size = 0
        for chain in chain_ids((config.get("rootfs") or {}).get("diff_ids") or []):
            layer = self.layers.get(chain)
            if layer is None or not self.layers.exists(chain):
                raise InvalidArgument(f"layer {chain} of image {image_id} is missing")
            size += layer.size
        existing = self._db.images.get(image_id)
        doc = {
            "config_json": config_bytes.decode(),
            "parent": parent or (existing or {}).get("parent", ""),
            "size": size,
            "last_tag_time": (existing or {}).get("last_tag_time"),
        }
        self._db.images.put(image_id, doc, created=parse_created(config.get("created")) or time.time())
        return self._from_doc(image_id, doc)

    # -- pins ---------------------------------------------------------------------------

    def _pin(self, chains: Iterable[str] = (), blobs: Iterable[str] = ()) -> None:
        with self._pin_guard:
            self._chain_pins.update(chains)
            self._blob_pins.update(blobs)

    def _unpin(self, chains: Iterable[str] = (), blobs: Iterable[str] = ()) -> None:
        with self._pin_guard:
            self._chain_pins.subtract(chains)
            self._blob_pins.subtract(blobs)
            self._chain_pins = +self._chain_pins  # drop the zeros
            self._blob_pins = +self._blob_pins

    @contextlib.contextmanager
    def pinning(self, chains: Iterable[str]) -> Iterator[None]:
        """Keep these layers (and their blobs) from the collector while a reader uses
        them (a push), without any lock."""
        chains = list(chains)
        self._pin(chains=chains)
        try:
            yield
        finally:
            self._unpin(chains=chains)

    def _pinned(self) -> tuple[set[str], set[str]]:
        with self._pin_guard:
            return set(self._chain_pins), set(self._blob_pins)

    # -- collection ---------------------------------------------------------------------

    def _referenced_chains(self) -> set[str]:
        refs: set[str] = set()
        for img in self.all():
            refs.update(img.chain_ids)
        refs.update(self.snapshots.pinned())
        # The builder's cache entries pin their layers (read from the store, not a hook, so
        # the startup collection already honours them); `builder prune` drops the rows.
        for doc in self._db.build_cache.all():
            refs.update(doc.get("chains") or [])
        return refs

    def collect_sync(self, drop_blobs: Iterable[str] = ()) -> int:
        """Remove the layers nothing references or pins, and of `drop_blobs` (blobs a failed
        write committed) those no layer names and no write pins. Call with `lock` held (or
        before the daemon serves). Returns the bytes of layers freed."""
        existing = self.layers.ids()  # listed before references and pins are read (see above)
        keep = self._referenced_chains()
        pinned_chains, pinned_blobs = self._pinned()
        keep |= pinned_chains
        freed = 0
        for chain in existing:
            if chain not in keep:
                freed += self.layers.remove(chain, keep_blobs=pinned_blobs)
        # Beyond the blobs of removed layers, only blobs a failed write made go: the
        # content store holds other kinds of blob (compressed layers of a pull) that are
        # not ours to judge.
        diff_ids = {doc["diff_id"] for doc in self._db.layers.all()}
        for d in drop_blobs:
            if d not in diff_ids and d not in pinned_blobs:
                self.content.delete(d)
        return freed

    async def collect(self) -> int:
        async with self.lock:
            return await asyncio.to_thread(self.collect_sync)


@dataclass(frozen=True)
class Committed:
    """What a write's commit did: the images (as committed, with their references) and,
    per reference set, the image it pointed at before (None: new, or the same image)."""

    images: dict[str, Image]
    replaced: dict[str, str | None] = field(default_factory=dict)


class ImageWrite:
    """One write transaction on the image store; see the module docstring. The blocking
    parts come in two forms: `ingest`/`create_layer`/`layer_from_dir` (awaitable, run in a
    worker thread) and their `*_sync` twins for code already in a worker thread."""

    def __init__(self, store: ImageStore) -> None:
        self._s = store
        self._chains: list[str] = []  # pinned layer keys
        self._blobs: list[str] = []  # pinned blobs
        self._new_blobs: set[str] = set()  # blobs this write committed (dropped on abort)
        self._images: list[tuple[bytes, str]] = []
        self._refs: list[tuple[reference.Reference, str]] = []
        self._guard = threading.Lock()
        self._closed = False
        self._inflight: set[asyncio.Future[Any]] = set()

    async def __aenter__(self) -> ImageWrite:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._closed:
            await self.abort()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run blocking work of this write in a worker thread. A cancelled caller does not
        stop the thread (nothing can); `abort` waits for it before it cleans up."""
        inner = asyncio.ensure_future(asyncio.to_thread(fn))
        self._inflight.add(inner)
        inner.add_done_callback(self._inflight.discard)
        return await asyncio.shield(inner)

    # -- content ------------------------------------------------------------------------

    def pin_blob(self, digest: str) -> None:
        """Keep a committed blob from the collector until this write ends."""
        with self._guard:
            self._blobs.append(digest)
        self._s._pin(blobs=[digest])

    def ingest_sync(self, raw: Any, expected: str | None = None) -> str:
        """Decompress `raw` (a binary file object: plain, gzip, bzip2 or xz) into the content store, verified
        against `expected` (a diff ID) when given; returns the diff ID."""
        if expected is not None:
            self.pin_blob(expected)
        w = self._s.content.writer()
        try:
            src = archive.decompressed(raw)
            try:
                while chunk := src.read(_CHUNK):
                    w.write(chunk)
            except (OSError, EOFError, gzip.BadGzipFile) as err:
                raise InvalidArgument(f"invalid layer data: {err}") from None
            existed = expected is not None and self._s.content.exists(expected)
            digest = w.commit(expected=expected)
        except BaseException:
            w.abort()
            raise
        if expected is None:
            self.pin_blob(digest)
        if not existed:
            with self._guard:
                self._new_blobs.add(digest)
        return digest

    async def ingest(self, raw: Any, expected: str | None = None) -> str:
        return await self.run(lambda: self.ingest_sync(raw, expected))

    def layer_from_dir_sync(self, upper: Path, parent_chain: str | None) -> str:
        """Make a layer of an overlay upper dir's changes (container commit, build step) on
        top of `parent_chain`; returns its diff ID, "" when there are no changes."""
        w = self._s.content.writer()
        try:
            count = snapdiff.write_layer_tar(upper, w, self._s.id_mapping) if upper.is_dir() else 0  # type: ignore[arg-type]
            if count == 0:
                w.abort()
                return ""
            existed = self._s.content.exists(w.digest)
            diff_id = w.commit()
        except BaseException:
            w.abort()
            raise
        self.pin_blob(diff_id)
        if not existed:
            with self._guard:
                self._new_blobs.add(diff_id)
        self.create_layer_sync(parent_chain, diff_id)
        return diff_id

    async def layer_from_dir(self, upper: Path, parent_chain: str | None) -> str:
        return await self.run(lambda: self.layer_from_dir_sync(upper, parent_chain))

    # -- layers -------------------------------------------------------------------------

    def use_layers(self, chains: Iterable[str]) -> None:
        """Pin existing layers this write's images will stand on (e.g. the layers a pull
        found already here), so the collector keeps them until the commit."""
        chains = list(chains)
        with self._guard:
            self._chains.extend(chains)
        self._s._pin(chains=chains)

    def create_layer_sync(self, parent: str | None, diff_id: str) -> str:
        """Extract the committed blob `diff_id` on top of layer `parent`; returns the
        layer's chain ID. Pinned first, so the collector cannot take it half-made."""
        chain = chain_id(parent, diff_id)
        self.use_layers([chain])
        try:
            self._s.layers.create(parent, diff_id)
        except tarfile.TarError as err:
            raise InvalidArgument(f"invalid tar archive: {err}") from None
        return chain

    async def create_layer(self, parent: str | None, diff_id: str) -> str:
        return await self.run(lambda: self.create_layer_sync(parent, diff_id))

    # -- metadata (staged; written by commit) -------------------------------------------

    @staticmethod
    def image_id(config_bytes: bytes) -> str:
        """An image's ID: the digest of its config, byte for byte."""
        return "sha256:" + hashlib.sha256(config_bytes).hexdigest()

    def put_image(self, config_bytes: bytes, *, parent: str = "") -> str:
        """Stage an image row; returns its ID."""
        self._images.append((config_bytes, parent))
        return self.image_id(config_bytes)

    def set_ref(self, ref: reference.Reference, image_id: str) -> None:
        self._refs.append((ref, image_id))

    async def commit(self) -> Committed:
        """Write the staged images and references in one transaction, under the lock
        (short: no I/O but SQLite). The image rows check that their layers exist."""
        if self._closed:
            raise RuntimeError("image write already ended")
        try:
            async with self._s.lock:
                images: dict[str, Image] = {}
                replaced: dict[str, str | None] = {}
                with self._s._db.transaction():
                    for config_bytes, parent in self._images:
                        img = self._s._put_image_locked(config_bytes, parent=parent)
                        images[img.id] = img
                    for ref, image_id in self._refs:
                        replaced[str(ref)] = self._s.set_ref_locked(ref, image_id)
                self._end()
        except BaseException:
            await self.abort()
            raise
        return Committed({i: self._s.get(i) or img for i, img in images.items()}, replaced)

    def _end(self) -> None:
        self._closed = True
        with self._guard:
            chains, blobs = self._chains, self._blobs
            self._chains, self._blobs = [], []
        self._s._unpin(chains, blobs)

    async def abort(self) -> None:
        """Undo: unpin, and collect what the write made that nothing references."""
        if self._closed:
            return
        self._closed = True
        # shielded: an abort that runs because the request was cancelled still finishes
        await asyncio.shield(asyncio.ensure_future(self._abort()))

    async def _abort(self) -> None:
        if self._inflight:  # a worker thread of this write still extracting or hashing
            await asyncio.wait(set(self._inflight))
        self._end()
        async with self._s.lock:
            await asyncio.to_thread(self._s.collect_sync, set(self._new_blobs))
